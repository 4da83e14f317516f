r"""Masked total-variation minimization (Guo, Rana, Cissé & van der Maaten, 2018).

Drop a random half of the pixels, then rebuild the "simplest" image that agrees with the kept
ones: with a mask :math:`m \in \{0, 1\}^d` (1 = kept) and a weight :math:`\lambda`,

.. math::  z^\star = \arg\min_z\ F(z) = \tfrac12 \|m \odot (z - x)\|_2^2 + \lambda\,
           \mathrm{TV}(z), \qquad \mathrm{TV}(z) = \sum_{i,j}
           \sqrt{(z_{i+1,j} - z_{i,j})^2 + (z_{i,j+1} - z_{i,j})^2},

isotropic TV with forward differences (zero across the border), per channel. Kept pixels are
pulled towards :math:`x`; dropped pixels only feel the smoothing, so they are in-painted.

**Solver.** The reference code patches scikit-image's Cython split-Bregman solver (Gauss–Seidel
sweeps, pixel after pixel, one image at a time). We use the primal–dual algorithm of Chambolle &
Pock (2011, Algorithm 1, :math:`\theta = 1`) instead, because every one of its updates is an
elementwise tensor operation on the whole batch: a gradient, a projection of the dual field onto
balls of radius :math:`\lambda`, a divergence and the closed-form proximal step of the masked data
term, :math:`z = (v + \tau m x)/(1 + \tau m)`. Split Bregman needs a linear solve per iteration
whose matrix depends on the mask (no FFT), which is sequential (Gauss–Seidel) or slow (Jacobi) on
a GPU. Step sizes :math:`\tau = 0.03/\lambda`, :math:`\sigma = 1/(8\tau)` satisfy
:math:`\tau\sigma\|\nabla\|^2 \le 1` (:math:`\|\nabla\|^2 \le 8`); the ratio follows
:math:`\lambda` (the radius of the dual balls), and on MNIST digits with half the pixels dropped
they reach 1% of the optimum within 100 iterations for :math:`\lambda` from 0.01 to 0.3.
PDHG is not a descent method (its primal objective may rise by ~0.05% from one iteration to the
next), so, as monotone FISTA does (Beck & Teboulle, 2009), the solver reports per image the best
iterate seen so far: the returned objective never increases.

Deviations from the reference: the mask is the Bernoulli draw itself. The reference compares the
image before and after ``skimage.util.random_noise`` (pepper noise), so a dropped pixel that was
already 0 counts as *kept*: its data term pins it to 0. On MNIST about 80% of the pixels are 0,
so the reference keeps most of the background fixed at 0 and in-paints only dropped stroke
pixels, while we in-paint every dropped pixel, background included. ``weight`` multiplies TV
(the reference's ``weight = 1/0.03`` multiplies the data term: the same problem up to scale for
``weight = 0.03``); a fixed iteration count instead of the reference's tolerance ``eps = 0.01``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..validate import check_count, check_nonnegative, check_pixels

TAU_LAMBDA = 0.03  # primal step tau = TAU_LAMBDA / weight, dual step sigma = 1 / (8 tau)


def _check_drop_prob(drop_prob: float) -> None:
    if not isinstance(drop_prob, int | float) or isinstance(drop_prob, bool):
        raise ValueError(f"drop_prob must be a number in [0, 1), got {drop_prob!r}")
    if not 0 <= drop_prob < 1:
        raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob!r}")


def pixel_dropout_mask(
    x: torch.Tensor, drop_prob: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A mask shaped like ``x``: 1 (kept) with probability ``1 - drop_prob``, else 0 (dropped),
    independently for every pixel and channel, as ``random_noise(x, "s&p", amount=drop_prob,
    salt_vs_pepper=0)`` in the reference."""
    check_pixels(x, "x")
    _check_drop_prob(drop_prob)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (u >= drop_prob).to(x.dtype)  # (B, C, H, W)


def _grad(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along rows and columns, 0 on the last row/column."""
    d1, d2 = torch.zeros_like(z), torch.zeros_like(z)
    d1[..., :-1, :] = z[..., 1:, :] - z[..., :-1, :]
    d2[..., :, :-1] = z[..., :, 1:] - z[..., :, :-1]
    return d1, d2  # (B, C, H, W) each


def _grad_adjoint(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    r""":math:`\nabla^\top p` (minus the discrete divergence)."""
    out = torch.zeros_like(p1)
    out[..., :-1, :] -= p1[..., :-1, :]
    out[..., 1:, :] += p1[..., :-1, :]
    out[..., :, :-1] -= p2[..., :, :-1]
    out[..., :, 1:] += p2[..., :, :-1]
    return out


def total_variation(z: torch.Tensor) -> torch.Tensor:
    r"""Isotropic :math:`\mathrm{TV}(z)` of each image, shape ``(B,)``."""
    return torch.hypot(*_grad(z)).flatten(1).sum(1)


def tv_objective(
    z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, weight: float
) -> torch.Tensor:
    r""":math:`F(z) = \frac12\|m \odot (z - x)\|_2^2 + \lambda\,\mathrm{TV}(z)` per image,
    shape ``(B,)``."""
    _check_tv_args(x, mask, weight)
    if z.shape != x.shape:
        raise ValueError(f"z must have the shape of x {tuple(x.shape)}, got {tuple(z.shape)}")
    return _objective(z, *_grad(z), x, mask, weight)


def tv_iterates(
    x: torch.Tensor, mask: torch.Tensor, weight: float
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Chambolle–Pock iterations for :func:`tv_objective`, without end: yields after every
    iteration the best iterate so far of each image and its objective ``(z (B, C, H, W), F (B,))``.
    Starts from ``z = m * x``."""
    _check_tv_args(x, mask, weight)
    tau = min(TAU_LAMBDA / max(weight, 1e-12), 1e4)  # primal step
    sigma = 1.0 / (8.0 * tau)  # dual step: tau * sigma * ||grad||^2 <= 1
    a, c = tau * mask * x, 1.0 / (1.0 + tau * mask)  # prox of the data term: z = (v + a) * c
    z = mask * x
    g1, g2 = _grad(z)  # gradient of z; z_bar = z at the start
    b1, b2 = g1, g2  # gradient of z_bar
    p1, p2 = torch.zeros_like(z), torch.zeros_like(z)
    best, best_f = z, _objective(z, g1, g2, x, mask, weight)
    while True:
        p1, p2 = p1 + sigma * b1, p2 + sigma * b2  # dual ascent
        shrink = torch.clamp(torch.hypot(p1, p2) / max(weight, 1e-12), min=1.0)
        p1, p2 = p1 / shrink, p2 / shrink  # project onto |p| <= weight
        z_new = (z - tau * _grad_adjoint(p1, p2) + a) * c  # primal descent, then the prox
        n1, n2 = _grad(z_new)
        # z_bar = 2 z_new - z (over-relaxation, theta = 1); the gradient is linear
        b1, b2, g1, g2, z = 2 * n1 - g1, 2 * n2 - g2, n1, n2, z_new
        f = _objective(z, g1, g2, x, mask, weight)  # (B,)
        better = f < best_f
        best = torch.where(better.view(-1, 1, 1, 1), z, best)
        best_f = torch.where(better, f, best_f)
        yield best, best_f


def _objective(z, g1, g2, x, mask, weight) -> torch.Tensor:
    """:func:`tv_objective` from a precomputed gradient ``(g1, g2)`` of ``z``, without checks."""
    data = 0.5 * (mask * (z - x)).square().flatten(1).sum(1)  # (B,)
    return data + weight * torch.hypot(g1, g2).flatten(1).sum(1)


def tv_minimize(x: torch.Tensor, mask: torch.Tensor, weight: float, iters: int) -> torch.Tensor:
    """The minimiser of :func:`tv_objective` after ``iters`` iterations (see the module text),
    batched, on ``x.device``. ``weight = 0`` returns ``x`` on the kept pixels."""
    check_count(iters, "iters", minimum=1)
    for i, (z, _) in enumerate(tv_iterates(x, mask, weight), start=1):
        if i == iters:
            return z
    raise AssertionError("unreachable")


def _check_tv_args(x: torch.Tensor, mask: torch.Tensor, weight: float) -> None:
    check_pixels(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got {tuple(x.shape)}")
    if not isinstance(mask, torch.Tensor) or mask.shape != x.shape:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must have the shape of x {tuple(x.shape)}, got {shape}")
    check_nonnegative(weight, "weight")


class TVMinimization(nn.Module):
    """Guo et al.'s transform: :func:`pixel_dropout_mask` then :func:`tv_minimize`, with a fresh
    mask on every call (from ``generator`` if given). Defaults: drop half the pixels, weight 0.03
    (the reference's 1/0.03 in its convention), 100 iterations.

    Like the reference (a Cython solver outside any autograd graph), it is a black box to
    autograd: the output has a zero derivative (see :func:`~course_lib.defenses.shattered`).
    """

    def __init__(
        self,
        drop_prob: float = 0.5,
        weight: float = 0.03,
        iters: int = 100,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        _check_drop_prob(drop_prob)
        check_nonnegative(weight, "weight")
        check_count(iters, "iters", minimum=1)
        self.drop_prob, self.weight, self.iters, self.generator = (
            drop_prob,
            weight,
            iters,
            generator,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .defended import shattered

        with torch.no_grad():
            mask = pixel_dropout_mask(x, self.drop_prob, self.generator)
            z = tv_minimize(x.detach(), mask, self.weight, self.iters)
        return shattered(x, z)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, weight={self.weight}, iters={self.iters}"
