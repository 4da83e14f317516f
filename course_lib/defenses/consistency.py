r"""Consistency regularization for adversarial robustness (Tack et al., 2022; reference code
``alinlab/consistency-adversarial``): two random augmentations of the same image, both attacked,
should get the same (temperature-sharpened) prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import pgd
from ..validate import check_count, check_nonnegative, check_positive

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def js_divergence(z1: torch.Tensor, z2: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    r"""Temperature-scaled Jensen–Shannon divergence between two batches of logits, per sample
    ``(B,)``:

    .. math::  \mathrm{JS}_\tau = \tfrac12 \mathrm{KL}(p_1 \,\|\, m) + \tfrac12
               \mathrm{KL}(p_2 \,\|\, m), \quad p_j = \mathrm{softmax}(z_j / \tau),
               \quad m = \tfrac12 (p_1 + p_2).

    Symmetric, 0 iff :math:`p_1 = p_2`, at most :math:`\ln 2`. As in the reference, :math:`\log m`
    is clamped at :math:`\ln 10^{-8}` and there is no :math:`\tau^2` factor.
    """
    check_positive(tau, "tau")
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] == 0:
            raise ValueError(f"{name} must be a batch of logits of shape (B, K), got {_shape(z)}")
    if z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must have the same shape (B, K), got {_shape(z1)} and {_shape(z2)}"
        )
    p1, p2 = F.softmax(z1 / tau, dim=1), F.softmax(z2 / tau, dim=1)  # (B, K)
    log_m = ((p1 + p2) / 2).clamp_min(1e-8).log()
    kl1 = F.kl_div(log_m, p1, reduction="none").sum(1)  # KL(p1 || m), (B,)
    kl2 = F.kl_div(log_m, p2, reduction="none").sum(1)
    return (kl1 + kl2) / 2


def random_affine(x: torch.Tensor, max_shift: float = 2.0, max_degrees: float = 10.0):
    r"""A random shift of up to ``max_shift`` pixels and rotation of up to ``max_degrees``,
    drawn per image and applied in one batched ``grid_sample`` (bilinear, zero padding: pixels
    stay in [0, 1]). Digits are not flipped: a mirrored 2 is not a 2."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got {_shape(x)}")
    check_nonnegative(max_shift, "max_shift")
    check_nonnegative(max_degrees, "max_degrees")
    B, _, H, W = x.shape
    angle = (torch.rand(B, device=x.device) * 2 - 1) * math.radians(max_degrees)  # (B,)
    shift = (torch.rand(B, 2, device=x.device) * 2 - 1) * max_shift * 2 / H  # grid units
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (B, 2, 3)
    flow = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, flow, align_corners=False).clamp(0, 1)


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def consistency_loss(
    eps: float,
    steps: int = 10,
    lam: float = 1.0,
    tau: float = 0.5,
    augment: Callable[[torch.Tensor], torch.Tensor] = random_affine,
) -> LossFn:
    r"""Adversarial training with attacked-augmentation consistency (Tack et al., 2022):

    .. math::  \mathcal L = \tfrac12\big[\mathrm{CE}(f(T_1(x) + \delta_1), y)
               + \mathrm{CE}(f(T_2(x) + \delta_2), y)\big]
               + \lambda\, \mathrm{JS}_\tau\big(f(T_1(x) + \delta_1),\, f(T_2(x) + \delta_2)\big),

    both :math:`\delta_j` from one PGD run on the :math:`2B` batch. Reference defaults:
    :math:`\lambda = 1`, :math:`\tau = 0.5`. Deviation: a shift-and-rotate augmentation for
    digits instead of the reference's crop/flip then AutoAugment + Cutout schedule for CIFAR.
    """
    check_nonnegative(eps, "eps")
    check_count(steps, "steps", minimum=1)
    check_nonnegative(lam, "lam")
    check_positive(tau, "tau")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x2, y2 = torch.cat([augment(x), augment(x)]), torch.cat([y, y])  # (2B, ...)
        logits = model(pgd(model, x2, y2, eps, steps=steps))  # (2B, K)
        z1, z2 = logits.chunk(2)
        return F.cross_entropy(logits, y2) + lam * js_divergence(z1, z2, tau).mean()

    return loss_fn
