r"""Upper bounds of the Lipschitz constant of a feed-forward net: products of layer norms.

For :math:`T = W_m \circ \phi \circ W_{m-1} \circ \dots \circ \phi \circ W_1` (affine layers,
activations :math:`\phi` that are 1-Lipschitz, no skip connections) the chain rule gives

.. math::  \theta \le \prod_{i=1}^m \|W_i\|_2

(Szegedy et al., 2014, "Intriguing properties of neural networks"; the lecture's
:math:`L_{2,2}` bound). A single logit's bound is never larger: with :math:`w_j` the weights of
logit :math:`j` (row ``j`` of the last ``nn.Linear``'s weight; the lecture's column
:math:`W_m[:, j]` in the (in, out) layout), :math:`L^j \le \big(\prod_{i<m} \|W_i\|_2\big)\,
\|w_j\|_2`, and the difference of two logits
:math:`L^{ji} \le \big(\prod_{i<m} \|W_i\|_2\big)\, \|w_j - w_i\|_2`
(Leino et al., 2021, GloRo nets).

A bound :math:`L` turns a logit margin into a radius in which the prediction cannot change
(:func:`course_lib.lipschitz.margin_radius` and its per-logit and pairwise variants). Introduced
in chapter 1; chapter 5 trains networks whose bound is small.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models import Normalize
from .constrained import FullSort, GroupSort, MaxMin
from .conv_bounds import conv_layer_geometry, conv_norm_upper

# Lipschitz constant of parameter-free layers (l2 -> l2). GELU (~1.13) and ELU(alpha > 1) are not
# 1-Lipschitz and are deliberately absent; Dropout is absent because in train mode it scales up.
ACTIVATION_LIPSCHITZ: dict[type, float] = {
    nn.ReLU: 1.0,
    nn.Tanh: 1.0,
    nn.Softplus: 1.0,
    nn.Sigmoid: 0.25,
    nn.Flatten: 1.0,
    nn.Identity: 1.0,
    GroupSort: 1.0,  # a permutation of its input (chapter 5)
    MaxMin: 1.0,
    FullSort: 1.0,
}


def layer_lipschitz(layer: nn.Module, index: int = 0) -> float:
    r"""The exact :math:`\ell_2` Lipschitz constant of one layer.

    ``nn.Linear``: :math:`\|W\|_2` by an SVD in float64 (the bias does not matter);
    ``Normalize``: :math:`1 / \min_c s_c`; ReLU, LeakyReLU, Tanh, Sigmoid, Softplus, Flatten:
    their slope bound. Anything else (a convolution, whose norm depends on the input size; a
    residual block; ...) raises a ``ValueError`` that names the layer and its position ``index``
    (convolutions are handled by :func:`layer_bounds`, which knows the input size).
    """
    if isinstance(layer, nn.Linear):
        return float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2))
    if isinstance(layer, Normalize):
        return float(1.0 / layer.std.detach().double().min())
    if isinstance(layer, nn.LeakyReLU):
        return max(1.0, abs(layer.negative_slope))
    if type(layer) in ACTIVATION_LIPSCHITZ:
        return ACTIVATION_LIPSCHITZ[type(layer)]
    raise ValueError(
        f"layer {index} ({type(layer).__name__}) is not supported by the layer-product bound: "
        "supported are Linear, Normalize and the activations "
        f"{sorted(t.__name__ for t in ACTIVATION_LIPSCHITZ)} + LeakyReLU "
        "(convolutions are not: their norms are in course_lib.lipschitz.layer_norms)"
    )


def lipschitz_upper_bound(
    model: nn.Module, input_shape: tuple[int, int, int] | None = None
) -> float:
    r"""The layer-product bound :math:`\prod_i \mathrm{Lip}(\text{layer}_i) \ge \theta` of an
    ``nn.Sequential`` feed-forward net (nested ``Sequential`` blocks are unrolled).

    A net with ``nn.Conv2d`` layers needs ``input_shape=(C, H, W)``: the spatial size is propagated
    layer by layer and each convolution contributes a guaranteed upper bound of its operator norm
    for its own zero padding and stride
    (:func:`course_lib.lipschitz.conv_bounds.conv_norm_upper`); without it a ``ValueError`` names
    the first convolution and its index."""
    return math.prod(layer_bounds(_layers(model), input_shape))


def layer_bounds(layers: list[nn.Module], input_shape=None) -> list[float]:
    r"""The Lipschitz bound of every layer of ``layers`` (exact for dense layers and activations,
    a guaranteed upper bound for convolutions on the propagated input size)."""
    shape = _check_input_shape(input_shape)
    out = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            stride, padding, next_shape = conv_layer_geometry(layer, shape, i)
            out.append(conv_norm_upper(layer.weight, shape[1:], stride, padding))
            shape = next_shape
            continue
        out.append(layer_lipschitz(layer, i))
        if isinstance(layer, nn.Flatten | nn.Linear):
            shape = None  # no convolution can follow a flattened activation
    return out


def lipschitz_upper_bound_per_logit(
    model: nn.Module, input_shape: tuple[int, int, int] | None = None
) -> torch.Tensor:
    r"""Per-logit bounds :math:`L^j = K_{sub}\, \|w_j\|_2` with :math:`K_{sub}` the product bound
    of every layer but the last, shape ``(K,)`` (float64). Each is :math:`\le` the global bound.
    ``input_shape`` as in :func:`lipschitz_upper_bound`."""
    k_sub, w = _body_and_head(model, input_shape)  # float, (K, h)
    return k_sub * w.norm(dim=1)  # (K,)


def lipschitz_upper_bound_pairwise(
    model: nn.Module, input_shape: tuple[int, int, int] | None = None
) -> torch.Tensor:
    r"""Bounds :math:`L^{ji} = K_{sub}\, \|w_j - w_i\|_2` of every logit difference
    :math:`f_j - f_i`, shape ``(K, K)`` (float64, zero diagonal). ``input_shape`` as in
    :func:`lipschitz_upper_bound`."""
    k_sub, w = _body_and_head(model, input_shape)
    return k_sub * torch.cdist(w, w)  # (K, K)


def _check_input_shape(input_shape) -> tuple[int, int, int] | None:
    if input_shape is None:
        return None
    shape = tuple(input_shape) if isinstance(input_shape, tuple | list | torch.Size) else ()
    if len(shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in shape):
        raise ValueError(f"input_shape must be (C, H, W) of ints >= 1 or None, got {input_shape!r}")
    return shape


def _layers(model: nn.Module) -> list[nn.Module]:
    """The layers of a (possibly nested) ``nn.Sequential``, in order."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(
            f"model must be an nn.Sequential feed-forward net, got {type(model).__name__}"
        )
    layers: list[nn.Module] = []
    for layer in model:
        layers += _layers(layer) if isinstance(layer, nn.Sequential) else [layer]
    return layers


def _body_and_head(model: nn.Module, input_shape=None) -> tuple[float, torch.Tensor]:
    """The product bound of all layers but the last, and the last layer's weight ``(K, h)``."""
    layers = _layers(model)
    if not layers or not isinstance(layers[-1], nn.Linear):
        raise ValueError("model must end with an nn.Linear layer (the logits)")
    k_sub = math.prod(layer_bounds(layers[:-1], input_shape))
    return k_sub, layers[-1].weight.detach().double()
