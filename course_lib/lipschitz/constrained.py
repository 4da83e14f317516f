r"""Layers whose Lipschitz constant is controlled by construction.

* :class:`SpectralNormalization`: :math:`W' = W / \|W\|_2 \cdot \hat L^{1/m}` as a
  ``torch.nn.utils.parametrize`` parametrization (the lecture's spectral normalization; Miyato
  et al., 2018), so that :math:`\prod_i \|W'_i\|_2 = \hat L`; :func:`spectral_normalize` puts it on
  every ``nn.Linear`` of a net, and (given the input shape) a guaranteed-bound version on every
  ``nn.Conv2d`` (:mod:`course_lib.lipschitz.conv_bounds`).
* :func:`group_sort` / :class:`GroupSort`, :class:`MaxMin`, :class:`FullSort` (Anil, Lucas,
  Grosse, 2019): 1-Lipschitz activations whose Jacobian is a permutation, so they preserve the
  gradient norm where ReLU halves it on average.
* :func:`bjorck` orthonormalization and the :class:`Bjorck` parametrization behind
  :func:`bjorck_linear` and :func:`bjorck_conv2d` (Björck & Bowie, 1971; Anil et al., 2019).

The certificate must hold for the weights **used at inference**: in ``eval()`` mode both
parametrizations compute their weight once, exactly (an SVD, or Björck to tolerance), and reuse it
until the raw weight changes; certify from :func:`course_lib.lipschitz.lipschitz_upper_bound`,
which takes an exact SVD of those weights, never from the training-time estimate.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..validate import check_count, check_positive
from .layer_norms import spectral_norm_gram, spectral_norm_power


class _EvalCache(nn.Module):
    """Recompute in ``train()`` mode (with gradients); in ``eval()`` mode compute once per raw
    weight version, detached (inference and attacks need no weight gradients)."""

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.weight(W)
        key = (W.data_ptr(), W._version, W.device, W.dtype)
        if getattr(self, "_key", None) != key:
            with torch.no_grad():
                self._cached = self.weight(W).detach()
            self._key = key
        return self._cached


class SpectralNormalization(_EvalCache):
    r""":math:`W \mapsto c\, W / \sigma_1(W)` with per-layer target :math:`c`.

    Training: :math:`\sigma_1` is estimated by ``method`` — ``"power"`` (one warm-started
    iteration per step, a lower bound, as in ``torch.nn.utils.parametrizations.spectral_norm``) or
    ``"gram"`` (6 Gram iterations, an upper bound, so :math:`\|W'\| \le c` during training too).
    Evaluation: :math:`\sigma_1` by an exact SVD, so :math:`\|W'\|_2 = c` to float precision.

    **Deviation from torch** (``torch.nn.utils.parametrizations.spectral_norm``): torch runs 15
    power iterations when the parametrization is registered, so its first training step already
    uses a converged estimate; ours starts cold, from a random ``u`` with **one** iteration on the
    first training forward, and converges over the first steps. Early in training the estimate is
    therefore lower than torch's and the normalised weight can exceed :math:`c` (by the factor
    :math:`\sigma_1/\hat\sigma`); certificates are unaffected (they use the exact SVD of
    ``eval()``). Kept as is because the course's trained models depend on it.
    """

    def __init__(self, c: float, method: str = "power"):
        super().__init__()
        check_positive(c, "c")
        if method not in ("power", "gram"):
            raise ValueError(f"method must be 'power' or 'gram', got {method!r}")
        self.c, self.method = float(c), method
        self._u: torch.Tensor | None = None

    def weight(self, W: torch.Tensor) -> torch.Tensor:
        if not self.training:
            sigma = torch.linalg.matrix_norm(W.double(), ord=2).to(W.dtype)
        elif self.method == "gram":
            sigma = spectral_norm_gram(W)
        else:
            with torch.no_grad():
                _, self._u = spectral_norm_power(W, 1, self._u)  # (n, 1), warm start
            sigma = (W @ self._u).norm()  # differentiable in W, u held fixed
        return W * (self.c / sigma)


def spectral_normalize(
    model: nn.Module,
    L_hat: float,
    method: str = "power",
    input_shape: tuple[int, int, int] | None = None,
) -> nn.Module:
    r"""Register :class:`SpectralNormalization` with :math:`c = \hat L^{1/m}` on each of the
    :math:`m` ``nn.Linear`` and ``nn.Conv2d`` layers of ``model`` (in place; returns it); a
    convolution gets :class:`~course_lib.lipschitz.conv_bounds.ConvSpectralNormalization` on the
    input size propagated from ``input_shape=(C, H, W)`` (required when there is one). Every other
    layer must be 1-Lipschitz (see :data:`course_lib.lipschitz.bounds.ACTIVATION_LIPSCHITZ`), else
    the product is not :math:`\hat L`: a ``ValueError`` names the first offending layer and its
    index."""
    from .bounds import _check_input_shape, _layers, layer_lipschitz
    from .conv_bounds import ConvSpectralNormalization, conv_layer_geometry

    check_positive(L_hat, "L_hat")
    layers = _layers(model)
    shape = _check_input_shape(input_shape)
    targets: list[tuple[nn.Module, tuple | None]] = []  # (layer, (input size, stride, padding))
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            stride, padding, next_shape = conv_layer_geometry(layer, shape, i)
            targets.append((layer, (shape[1:], stride, padding)))
            shape = next_shape
            continue
        if isinstance(layer, nn.Linear):
            targets.append((layer, None))
        elif layer_lipschitz(layer, i) > 1.0:
            raise ValueError(f"layer {i} ({type(layer).__name__}) is not 1-Lipschitz")
        if isinstance(layer, nn.Flatten | nn.Linear):
            shape = None
    if not targets:
        raise ValueError("model must contain at least one nn.Linear or nn.Conv2d layer, got none")
    c = L_hat ** (1 / len(targets))
    for layer, conv in targets:
        norm = (
            SpectralNormalization(c, method)
            if conv is None
            else ConvSpectralNormalization(c, *conv, method)
        )
        parametrize.register_parametrization(layer, "weight", norm)
    return model


def group_sort(x: torch.Tensor, group_size: int | None = 2) -> torch.Tensor:
    r"""Sort each group of ``group_size`` adjacent channels (dim 1) in ascending order (Anil
    et al., 2019); ``None`` sorts all channels (FullSort), 2 is MaxMin. The output is a
    permutation of the input, so the map is 1-Lipschitz and its Jacobian is orthogonal.
    Same channel grouping as deel-torchlip's ``group_sort``."""
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError(f"x must be a tensor (B, C, ...) with at least 2 dims, got {x!r:.60}")
    C = x.shape[1]
    g = C if group_size is None else group_size
    if not isinstance(g, int) or g < 1 or C % g != 0:
        raise ValueError(f"group_size must be an int >= 1 dividing the width {C}, got {g!r}")
    groups = x.reshape(x.shape[0], C // g, g, *x.shape[2:])  # (B, C/g, g, ...)
    return groups.sort(dim=2).values.reshape(x.shape)


class GroupSort(nn.Module):
    """:func:`group_sort` as a layer (``group_size=None``: FullSort)."""

    def __init__(self, group_size: int | None = 2):
        super().__init__()
        if group_size is not None:
            check_count(group_size, "group_size", minimum=1)
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_sort(x, self.group_size)


class MaxMin(GroupSort):
    """GroupSort with groups of 2: each pair becomes (min, max)."""

    def __init__(self):
        super().__init__(2)


class FullSort(GroupSort):
    """GroupSort with one group: sorts the whole layer."""

    def __init__(self):
        super().__init__(None)


def bjorck(
    W: torch.Tensor,
    iterations: int = 25,
    tol: float = 1e-6,
    beta: float = 0.5,
    grad_iterations: int = 4,
) -> torch.Tensor:
    r"""Björck orthonormalization of order 1 (Björck & Bowie, 1971; Anil et al., 2019, eq. 9):
    :math:`A \leftarrow (1+\beta)A - \beta A A^\top A`, the first Taylor term of the closest
    orthonormal matrix :math:`A (A^\top A)^{-1/2}`.

    It converges when :math:`\sigma_1(A) < \sqrt 3`, so ``W`` ``(m, n)`` is first divided by a
    2-step Gram-iteration bound (:math:`\sigma_1 \le 1` guaranteed, at most
    :math:`\text{rank}^{1/8}` too small; deel-torchlip divides by a power-iteration estimate,
    which can leave :math:`\sigma_1` slightly above 1). It stops after ``iterations`` or once
    :math:`\|A^\top A - I\|_F < ` ``tol`` (:math:`\ge \|A^\top A - I\|_2`), on the smaller Gram
    side. Gradients flow through the first ``grad_iterations`` steps; the remaining ones (close to
    the fixed point) are applied as a constant correction (straight-through). deel-torchlip
    also stops differentiating after 4 steps, by detaching the cubic term instead.
    """
    check_count(iterations, "iterations", minimum=1)
    check_count(grad_iterations, "grad_iterations", minimum=0)
    check_positive(tol, "tol")
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 < beta < 1:
        raise ValueError(f"beta must be a number in (0, 1), got {beta!r}")
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        raise ValueError(f"W must be a matrix (m, n), got {W!r:.60}")
    if not bool((W != 0).any()):
        raise ValueError("W must be nonzero: a zero matrix has no orthonormal polar factor")
    return _bjorck_steps(W / spectral_norm_gram(W, 2), iterations, tol, beta, grad_iterations)[0]


def _bjorck_steps(
    A: torch.Tensor, iterations: int, tol: float, beta: float, grad_iterations: int
) -> tuple[torch.Tensor, bool]:
    """The Björck loop on an already scaled ``A``; also says whether it reached ``tol``."""
    wide = A.shape[0] < A.shape[1]
    eye = torch.eye(min(A.shape), dtype=A.dtype, device=A.device)
    A_grad, converged = A, False
    for i in range(iterations):
        if i == grad_iterations:
            A_grad, A = A, A.detach()
        gram = A @ A.T if wide else A.T @ A  # (min, min)
        if torch.linalg.matrix_norm(gram.detach() - eye) < tol:
            converged = True
            break
        A = (1 + beta) * A - beta * (gram @ A if wide else A @ gram)
    if i < grad_iterations:
        return A, converged
    return A_grad + (A - A_grad.detach()), converged  # value of A, gradient of the first steps


class Bjorck(_EvalCache):
    r"""Parametrization ``weight = bjorck(W)`` for a linear weight ``(out, in)``, or for a conv
    kernel reshaped to ``(C_out, C_in k_1 k_2)`` and divided by
    :math:`\sqrt{\lceil k_1/s\rceil \lceil k_2/s\rceil}` (the corrected reshape bound of
    :func:`course_lib.lipschitz.layer_norms.conv_reshaped_bound`; deel-torchlip's
    ``lconv_norm`` without its zero-padding refinement), so the layer is 1-Lipschitz."""

    def __init__(self, iterations: int = 25, tol: float = 1e-6, stride: int = 1):
        super().__init__()
        check_count(iterations, "iterations", minimum=1)
        check_positive(tol, "tol")
        check_count(stride, "stride", minimum=1)
        self.iterations, self.tol, self.stride = iterations, tol, stride
        self._u: torch.Tensor | None = None

    def weight(self, W: torch.Tensor) -> torch.Tensor:
        W2 = W.reshape(W.shape[0], -1)
        A = None
        if self.training:
            # training, like deel-torchlip: pre-scale by a warm-started power-iteration estimate
            # (about sigma_1, so few Björck steps) and stop at the looser tolerance 1e-3; if that
            # does not converge, fall back to the guaranteed Gram pre-scaling below
            with torch.no_grad():
                sigma, self._u = spectral_norm_power(W2, 1 if self._u is not None else 10, self._u)
            A, ok = _bjorck_steps(W2 / sigma, self.iterations, max(self.tol, 1e-3), 0.5, 4)
            A = A if ok else None
        if A is None:  # inference: Gram pre-scaling (convergence guaranteed), tolerance ``tol``
            A = bjorck(W2, self.iterations, self.tol if not self.training else 1e-3)
        A = A.reshape(W.shape)
        if W.ndim == 2:
            return A
        k1, k2 = W.shape[-2:]
        s = self.stride
        return A / math.sqrt(math.ceil(k1 / s) * math.ceil(k2 / s))


def bjorck_linear(in_features: int, out_features: int, iterations: int = 25) -> nn.Linear:
    """An ``nn.Linear`` with orthonormal rows or columns (:class:`Bjorck`), orthogonal init."""
    layer = nn.Linear(in_features, out_features)
    nn.init.orthogonal_(layer.weight)
    parametrize.register_parametrization(layer, "weight", Bjorck(iterations))
    return layer


def bjorck_conv2d(
    c_in: int, c_out: int, kernel_size: int, stride: int = 1, padding: int = 0
) -> nn.Conv2d:
    """An ``nn.Conv2d`` whose operator norm is at most 1 for zero padding (:class:`Bjorck`)."""
    layer = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding)
    nn.init.orthogonal_(layer.weight)
    parametrize.register_parametrization(layer, "weight", Bjorck(stride=stride))
    return layer
