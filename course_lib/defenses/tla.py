r"""Triplet Loss Adversarial training, TLA (Mao et al., 2019, "Metric Learning for Adversarial
Robustness"; reference code ``columbia/Metric_Learning_Adversarial_Robustness``).

In the feature space of a chosen layer :math:`f^{(k)}`, the adversarial example (the *anchor*)
is pulled towards its clean image (the *positive*) and pushed away from the most similar clean
image of another class (the *negative*), with an angular distance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import pgd
from ..validate import check_count, check_nonnegative

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def angular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`D(a, b) = 1 - \frac{|\langle a, b\rangle|}{\|a\|_2 \|b\|_2}` row by row, shape
    ``(B,)``: 0 for parallel or anti-parallel features, 1 for orthogonal ones."""
    _check_same_shape(a=a, b=b)
    return 1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-12).abs()


def hardest_negative(
    anchor: torch.Tensor, pool: torch.Tensor, y_anchor: torch.Tensor, y_pool: torch.Tensor
) -> torch.Tensor:
    r"""For each anchor, the index into ``pool`` of the *hardest* negative: the entry of another
    class with the smallest angular distance (largest :math:`|\cos|`), shape ``(B,)``. Raises if
    some anchor has no entry of another class in the pool."""
    for name, f in (("anchor", anchor), ("pool", pool)):
        if not isinstance(f, torch.Tensor) or f.ndim < 2 or f.shape[0] == 0:
            raise ValueError(
                f"{name} must be a non-empty batch of features (B, ...), got {_shape(f)}"
            )
    if anchor[0].numel() != pool[0].numel():
        raise ValueError(
            f"anchor and pool must have features of the same size, got {tuple(anchor.shape)} "
            f"and {tuple(pool.shape)}"
        )
    for name, labels, f in (("y_anchor", y_anchor, anchor), ("y_pool", y_pool, pool)):
        if not isinstance(labels, torch.Tensor) or labels.shape != (f.shape[0],):
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(
                f"{name} must hold one label per row, shape ({f.shape[0]},), got {got}"
            )
    a = F.normalize(anchor.flatten(1), dim=1, eps=1e-12)  # (B, m)
    p = F.normalize(pool.flatten(1), dim=1, eps=1e-12)  # (P, m)
    similarity = (a @ p.T).abs()  # (B, P)
    same = y_anchor[:, None] == y_pool[None, :]  # (B, P)
    if same.all(dim=1).any():
        raise ValueError("pool must hold an entry of another class for every anchor")
    return similarity.masked_fill(same, -1.0).argmax(dim=1)


def triplet_loss(
    f_a: torch.Tensor, f_p: torch.Tensor, f_n: torch.Tensor, margin: float, lam: float = 0.0
) -> torch.Tensor:
    r"""The TLA regulariser, averaged over the batch:

    .. math::  \max\big(D(f_a, f_p) - D(f_a, f_n) + \alpha,\, 0\big)
               + \lambda\,\big(\|f_a\|_2 + \|f_p\|_2 + \|f_n\|_2\big)

    with margin :math:`\alpha` (``margin``) and the feature-norm weight :math:`\lambda` (the
    slide's form). Deviation: the reference code applies its weight 1e-4 to the *mean of the
    squared entries* of the features, not to the sum of their :math:`\ell_2` norms, so the same
    :math:`\lambda` weighs the norms differently here (a vector of :math:`m` features of norm
    :math:`r` costs :math:`\lambda r^2/m` there, :math:`\lambda r` here)."""
    check_nonnegative(margin, "margin")
    check_nonnegative(lam, "lam")
    _check_same_shape(f_a=f_a, f_p=f_p, f_n=f_n)
    hinge = F.relu(angular_distance(f_a, f_p) - angular_distance(f_a, f_n) + margin)  # (B,)
    norms = sum(f.flatten(1).norm(dim=1) for f in (f_a, f_p, f_n))  # (B,)
    return (hinge + lam * norms).mean()


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _check_same_shape(**features: torch.Tensor) -> None:
    shapes = {
        k: tuple(f.shape) if isinstance(f, torch.Tensor) else None for k, f in features.items()
    }
    first = next(iter(shapes.values()))
    if first is None or len(first) < 2 or first[0] == 0 or any(s != first for s in shapes.values()):
        names = " and ".join(shapes)
        raise ValueError(
            f"{names} must be batches of features of the same shape (B, ...), got {shapes}"
        )


def tla_loss(
    eps: float,
    steps: int = 10,
    weight: float = 0.5,
    margin: float = 0.05,
    lam: float = 1e-4,
    layer: int = -1,
) -> LossFn:
    r"""TLA training for an ``nn.Sequential`` model: features :math:`f^{(k)}` = ``model[:layer]``
    (by default the penultimate layer, as in the reference), head = ``model[layer:]``;

    .. math::  \mathcal L = \mathrm{CE}(f(x'), y) + w\, \mathrm{triplet}(f^{(k)}(x'),
               f^{(k)}(x), f^{(k)}(x_n)),

    :math:`x'` from PGD (``steps`` steps, random start) in the model's current mode, :math:`x_n`
    the hardest negative among the batch's clean images. Defaults are the reference's MNIST
    configuration (margin 0.05, weight 0.5, norm weight 1e-4). Deviations: negatives are mined
    from the batch, not from a pool of 500 images; the positive is the clean image without the
    reference's extra uniform noise, and the second triplet (another clean image of the same
    class as positive) is left out.
    """
    check_nonnegative(eps, "eps")
    check_count(steps, "steps", minimum=1)
    check_nonnegative(weight, "weight")
    check_nonnegative(margin, "margin")
    check_nonnegative(lam, "lam")
    if isinstance(layer, bool) or not isinstance(layer, int) or layer == 0:
        raise ValueError(f"layer must be a nonzero int (a split point of the model), got {layer!r}")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(model, nn.Sequential):
            raise ValueError(f"model must be an nn.Sequential, got {type(model).__name__}")
        n = len(model)
        if not (1 <= layer < n or -n < layer <= -1):
            raise ValueError(
                f"layer must split the model into features and head, in [1, {len(model) - 1}] "
                f"or [-{len(model) - 1}, -1], got {layer}"
            )
        features, head = model[:layer], model[layer:]
        x_adv = pgd(model, x, y, eps, steps=steps)  # anchors
        f_a, f_p = features(x_adv), features(x)  # (B, m) each
        neg = hardest_negative(f_a.detach(), f_p.detach(), y, y)  # (B,)
        reg = triplet_loss(f_a, f_p, f_p[neg], margin, lam)
        return F.cross_entropy(head(f_a), y) + weight * reg

    return loss_fn
