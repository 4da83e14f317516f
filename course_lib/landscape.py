r"""Loss landscapes around an input and the curvature of the loss in input space.

The lecture's picture of adversarial training (from Moosavi-Dezfooli et al., 2019, "Robustness via
curvature regularization, and vice versa", Fig. 1) plots the loss of one image on the plane

.. math::  \ell(a, b) = \ell\big(f(x + a\,u + b\,v),\, y\big),

where :math:`u` is the (sign of the) loss gradient, the direction an attack climbs, and :math:`v` a
random direction. Both directions here have unit :math:`\ell_\infty` norm (entries :math:`\pm 1`),
so each axis alone reads as an :math:`\ell_\infty` budget. The plane meets the ball
:math:`\|\delta\|_\infty \le \varepsilon` in a **diamond**, not a square: when the pixels show all
four sign patterns of :math:`(u_i, v_i)`, :math:`\|a u + b v\|_\infty = |a| + |b|`
(:func:`linf_section` computes the section for any pair of directions). Points are *not* clipped to
[0, 1] (as in the paper's figures): the landscape is a property of the function, not of the
threat model.

Curvature is measured by the top eigenvalues of the input Hessian
:math:`\nabla_x^2 \ell(f(x), y)`, computed per sample with Hessian-vector products (double
back-propagation, never the :math:`d \times d` matrix) and subspace iteration.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import input_gradient
from .validate import check_batch, check_choice, check_count, check_labels, check_nonnegative

PerSampleLoss = Callable[[torch.Tensor], torch.Tensor]  # (B, ...) -> (B,)


def gradient_sign_direction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r""":math:`u = \mathrm{sign}(\nabla_x \ell(f(x), y))`, the direction FGSM steps along
    (unit :math:`\ell_\infty` norm). ``x`` is a batch ``(B, ...)``."""
    check_batch(x, "x")
    check_labels(x, y)
    return input_gradient(model, x, y).sign()  # (B, ...)


def random_direction(
    like: torch.Tensor, kind: str = "rademacher", generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""A random direction shaped like ``like``: ``"rademacher"`` draws entries :math:`\pm 1`
    (unit :math:`\ell_\infty` norm, like the gradient sign); ``"gaussian"`` draws
    :math:`\mathcal N(0, I)` rescaled to the same :math:`\ell_2` norm :math:`\sqrt d` per sample."""
    check_choice(kind, "kind", ("rademacher", "gaussian"))
    g = torch.randn(like.shape, generator=generator, device="cpu").to(like.device, like.dtype)
    if kind == "rademacher":
        return torch.where(g >= 0, 1.0, -1.0).to(like.dtype)
    flat = g.flatten(1)  # (B, d)
    return (flat * (flat.shape[1] ** 0.5) / flat.norm(dim=1, keepdim=True)).view_as(like)


@torch.no_grad()
def linf_section(
    u: torch.Tensor, v: torch.Tensor, eps: float, n_angles: int = 360
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The boundary of the plane's section of the :math:`\ell_\infty` ball of radius ``eps``:
    points :math:`(a_k, b_k)` with :math:`\|a_k u + b_k v\|_\infty = \varepsilon`, one per angle
    :math:`\theta_k` (``n_angles`` evenly spaced from 0, a multiple of 4 hits the axes and the
    diagonals), closed (the last point repeats the first). Along the ray :math:`\theta` the
    boundary is at :math:`r = \varepsilon / \|\cos\theta\, u + \sin\theta\, v\|_\infty`. For
    sign vectors with all four sign patterns the section is the diamond
    :math:`|a| + |b| \le \varepsilon`. ``u``, ``v`` are one input each, of the same shape."""
    check_nonnegative(eps, "eps")
    check_count(n_angles, "n_angles", minimum=4)
    if u.shape != v.shape:
        raise ValueError(
            f"u and v must have the same shape, got {tuple(u.shape)} and {tuple(v.shape)}"
        )
    theta = torch.arange(n_angles + 1, dtype=torch.float64) * (2 * torch.pi / n_angles)  # (n+1,)
    cos, sin = theta.cos(), theta.sin()
    U, V = u.flatten().double().cpu(), v.flatten().double().cpu()  # (d,)
    if torch.linalg.matrix_rank(torch.stack([U, V])) < 2:
        raise ValueError("u and v must span a plane (linearly independent, nonzero)")
    norm = (cos[:, None] * U + sin[:, None] * V).abs().amax(1)  # (n+1,), > 0
    r = eps / norm
    return r * cos, r * sin


@torch.no_grad()
@torch.no_grad()
def loss_plane(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    chunk: int = 512,
) -> torch.Tensor:
    r"""Cross-entropy :math:`\ell(f(x + a_j u + b_i v), y)` on the grid ``b x a``: shape
    ``(len(b), len(a))``, so that row ``i`` is one value of ``b`` (plotting convention).

    ``x``, ``u``, ``v`` are one input ``(C, H, W)`` (or ``(d,)``), ``y`` a 0-d label. The grid is
    evaluated in batches of ``chunk`` points, one forward pass each, without autograd (a batch of
    a few hundred small images keeps the activations near the CPU caches; ten thousand at once is
    about 2-3x slower on a 2-core CPU).
    """
    a, b = _check_grid(a, "a"), _check_grid(b, "b")
    check_count(chunk, "chunk", minimum=1)
    if u.shape != x.shape or v.shape != x.shape:
        raise ValueError(f"u and v must have the shape of x {tuple(x.shape)}")
    bb, aa = torch.meshgrid(b.to(x), a.to(x), indexing="ij")  # (S, T) each: b rows, a columns
    coeff_b, coeff_a = bb.reshape(-1), aa.reshape(-1)  # (S*T,)
    shape = (-1, *([1] * x.ndim))
    losses = []
    for ca, cb in zip(coeff_a.split(chunk), coeff_b.split(chunk), strict=True):
        points = x + ca.view(shape) * u + cb.view(shape) * v  # (n, C, H, W)
        target = torch.full((points.shape[0],), int(y), device=x.device)
        losses.append(F.cross_entropy(model(points), target, reduction="none"))  # (n,)
    return torch.cat(losses).view(len(b), len(a))


def loss_line(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, u: torch.Tensor, a: torch.Tensor
) -> torch.Tensor:
    r"""Cross-entropy :math:`\ell(f(x + a_j u), y)` along one direction: shape ``(len(a),)``."""
    zero = torch.zeros(1)
    return loss_plane(model, x, y, u, torch.zeros_like(u), a, zero)[0]


def cross_entropy_of(model: nn.Module, y: torch.Tensor) -> PerSampleLoss:
    """The per-sample loss ``x -> CE(f(x), y)`` of shape ``(B,)``, for the curvature functions."""
    return lambda x: F.cross_entropy(model(x), y, reduction="none")


def hessian_vector_product(loss: PerSampleLoss, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""Per sample, :math:`\nabla_x^2 \ell_i(x_i)\, v_i` by double back-propagation:
    :math:`\nabla_x \langle \nabla_x \ell(x), v\rangle`. Samples must not interact (eval mode), so
    the Hessian of :math:`\sum_i \ell_i` is block-diagonal and one pass serves the whole batch."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(x).sum(), x, create_graph=True)  # (B, ...)
        (hv,) = torch.autograd.grad((g * v).sum(), x)  # (B, ...)
    return hv.detach()


def hessian_top_eigenvalues(
    loss: PerSampleLoss, x: torch.Tensor, k: int = 1, iters: int = 20, seed: int = 0
) -> torch.Tensor:
    r"""The ``k`` eigenvalues of largest magnitude of each sample's input Hessian
    :math:`\nabla_x^2 \ell_i(x_i)`, shape ``(B, k)``, sorted by decreasing magnitude.

    Subspace (block power) iteration: :math:`V \leftarrow \mathrm{QR}(H V)` per sample, then the
    Rayleigh–Ritz values :math:`\mathrm{eig}(V^\top H V)`. It costs ``k`` Hessian-vector products
    per iteration and converges at the rate :math:`|\lambda_{k+1}/\lambda_k|` (exact on
    a quadratic once it has converged). ``loss`` maps ``(B, ...)`` to per-sample losses ``(B,)``,
    e.g. :func:`cross_entropy_of`.
    """
    check_batch(x, "x")
    check_count(k, "k", minimum=1)
    check_count(iters, "iters", minimum=1)
    B, d = x.shape[0], x[0].numel()
    if k > d:
        raise ValueError(f"k must be at most the input dimension {d}, got {k}")
    gen = torch.Generator().manual_seed(seed)
    V = torch.linalg.qr(torch.randn(B, d, k, generator=gen).to(x))[0]  # (B, d, k)
    for _ in range(iters):
        HV = _hvp_block(loss, x, V)  # (B, d, k)
        V = torch.linalg.qr(HV)[0]
    T = V.transpose(1, 2) @ _hvp_block(loss, x, V)  # (B, k, k) Rayleigh quotient
    eig = torch.linalg.eigvalsh((T + T.transpose(1, 2)) / 2)  # (B, k)
    order = eig.abs().argsort(dim=1, descending=True)
    return eig.gather(1, order)


def _hvp_block(loss: PerSampleLoss, x: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``H_i V_i`` for a block ``V`` of shape ``(B, d, k)``: one HVP per column."""
    cols = [
        hessian_vector_product(loss, x, V[:, :, j].view_as(x)).flatten(1) for j in range(V.shape[2])
    ]
    return torch.stack(cols, dim=2)  # (B, d, k)


def _check_grid(t, name: str) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float32).flatten()
    if t.numel() < 1 or not torch.isfinite(t).all():
        raise ValueError(f"{name} must be a non-empty 1-D grid of finite numbers")
    return t


def grid(radius: float, resolution: int) -> torch.Tensor:
    """``resolution`` evenly spaced values in ``[-radius, radius]`` (at least 2)."""
    check_count(resolution, "resolution", minimum=2)
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius!r}")
    return torch.linspace(-radius, radius, resolution)
