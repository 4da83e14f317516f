r"""Measuring Lipschitz constants: local Jacobian norms, sampled lower bounds, secant slopes.

A map :math:`T` is :math:`\theta`-Lipschitz (in :math:`\ell_2`) on a set :math:`S` if

.. math::  \|T(x + z) - T(x)\|_2 \le \theta\, \|z\|_2 \quad \text{for all } x, x + z \in S.

For a differentiable :math:`T` on a convex :math:`S` the smallest such :math:`\theta` is
:math:`\sup_{x \in S} \|\nabla T(x)\|_2`, the largest *local* Lipschitz constant, where
:math:`\|\nabla T(x)\|_2` is the spectral norm (largest singular value) of the Jacobian.
This module measures; it never constrains a network (constrained layers: chapter 5).

* :func:`jacobian_spectral_norm`: :math:`\|\nabla T(x)\|_2` per sample, exact (batched VJPs);
* :func:`jacobian_spectral_norm_power`: the same by power iteration on JVP/VJP products, for maps
  with many outputs (it never forms the Jacobian);
* :func:`lipschitz_lower_bound`: the largest local constant or difference quotient found by
  sampling and gradient ascent; a lower bound of :math:`\theta`;
* :func:`secant_slopes`: every secant slope of a 1-D function on a grid;

Upper bounds (product of layer norms) live in :mod:`.bounds`, certified radii in
:mod:`.certificates`; :mod:`course_lib.lipschitz` re-exports all three. Introduced in chapter 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..validate import check_batch, check_count, check_fits, check_pixels, check_positive


def jacobian_spectral_norm(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    r"""The local Lipschitz constant :math:`\|\nabla T(x_i)\|_2` of every sample, shape ``(B,)``.

    The Jacobian :math:`J_i = \partial T(x_i) / \partial x_i \in \mathbb R^{K \times d}` of
    every sample comes from reverse mode, vectorised over the ``K`` rows of the identity: row
    :math:`k` of all the :math:`J_i` is one vector-Jacobian product :math:`e_k^\top J`, and
    ``autograd.grad(..., is_grads_batched=True)`` runs the ``K`` of them as one ``vmap``-ed
    backward pass (what ``torch.func.jacrev`` does, without its 3 s import of ``torch._dynamo``).
    The spectral norm, the largest singular value, is the square root of the largest eigenvalue of
    the small Gram matrix :math:`J J^\top` (:math:`K \times K`), much cheaper than an SVD of the
    wide :math:`J`. Exact up to floating point; cost about ``K`` backward passes and memory
    ``B * K * d``, so it suits classifiers (few outputs); for maps with many outputs use
    :func:`jacobian_spectral_norm_power`. ``model`` must treat samples
    independently (eval mode). At a ReLU kink one of the adjacent pieces is measured.
    """
    check_batch(x, "x")
    check_fits(model, x)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = model(x).flatten(1)  # (B, K)
        K = out.shape[1]
        rows = torch.eye(K, dtype=out.dtype, device=out.device)  # e_1 ... e_K
        rows = rows.unsqueeze(1).expand(K, *out.shape)  # (K, B, K)
        (J,) = torch.autograd.grad(out, x, rows, is_grads_batched=True)  # (K, B, ...)
    J = J.flatten(2).transpose(0, 1)  # (B, K, d)
    # sigma_max(J)^2 = lambda_max of the smaller Gram matrix: far cheaper than an SVD of J
    G = J @ J.mT if J.shape[1] <= J.shape[2] else J.mT @ J  # (B, k, k), k = min(K, d)
    return torch.linalg.eigvalsh(G)[:, -1].clamp_min(0).sqrt().detach()  # (B,)


def jacobian_spectral_norm_power(
    model: nn.Module, x: torch.Tensor, iters: int = 50, seed: int = 0
) -> torch.Tensor:
    r""":math:`\|\nabla T(x_i)\|_2` per sample by power iteration, without forming the Jacobian.

    Repeats :math:`v \leftarrow J^\top J v / \|J^\top J v\|` with one Jacobian-vector product
    and one vector-Jacobian product for the whole batch at once (each sample has its own
    :math:`v_i`), and returns :math:`\|J_i v_i\|`. Both products are reverse-mode: :math:`J v`
    is the derivative of the linear map :math:`u \mapsto v^\top J^\top u` (the "double-backward"
    trick), so no forward-mode support is needed. This is
    a Rayleigh quotient: it never exceeds the exact value and converges to it geometrically: after
    :math:`t` steps :math:`v`'s angle to the top singular vector shrinks like
    :math:`(\sigma_2/\sigma_1)^{2t}` and the estimate's relative error like
    :math:`(\sigma_2/\sigma_1)^{4t}`. Cost ``2 * iters`` passes whatever the number of
    outputs. ``seed`` fixes the random start; ``model`` must treat samples independently.
    """
    check_batch(x, "x")
    check_count(iters, "iters", minimum=1)
    check_fits(model, x)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    v = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)  # (B, ...)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = model(x).flatten(1)  # (B, K), its graph is reused by every product
        u = torch.zeros_like(out, requires_grad=True)  # (B, K)
        (JTu,) = torch.autograd.grad(out, x, u, create_graph=True)  # J^T u, linear in u
        for _ in range(iters):
            v = v / _per_sample_norm(v)
            (Jv,) = torch.autograd.grad(JTu, u, v, retain_graph=True)  # d(v.J^T u)/du = J v
            (v,) = torch.autograd.grad(out, x, Jv, retain_graph=True)  # J^T J v: (B, ...)
        (Jv,) = torch.autograd.grad(JTu, u, v / _per_sample_norm(v))
    return Jv.norm(dim=1).detach()  # (B,)


def lipschitz_lower_bound(
    model: nn.Module, x: torch.Tensor, steps: int = 20, alpha: float = 0.02, seed: int = 0
) -> tuple[float, torch.Tensor]:
    r"""A lower bound of :math:`\theta` on the pixel box :math:`[0,1]^d`, and where it was found.

    Two kinds of numbers are lower bounds of :math:`\theta` on the box, and we search for large
    ones of both:

    1. **local constants** :math:`\|\nabla T(p)\|_2` at points :math:`p` of the box (every one is
       :math:`\le \theta = \sup_p \|\nabla T(p)\|_2`): at the given points ``x`` (B, ...), and
       at 9 points along each segment found by the ascent below;
    2. **difference quotients** :math:`q(a,b) = \|T(a) - T(b)\|_2 / \|a - b\|_2` of pairs of
       points of the box (each is :math:`\le \theta` by definition): from every sample, a pair
       :math:`(a, b)` climbs :math:`q` for ``steps`` normalised-gradient steps of size ``alpha``
       (projected into the box).

    For a vector-valued :math:`T` only the mean value *inequality* holds
    (:math:`q(a,b) \le \sup_{[a,b]} \|\nabla T\|_2`), so some point of the segment is at least
    as steep as :math:`q`, but the 9 probes may miss it; the quotient itself is kept as a
    candidate. Returns ``(theta_lower, p_star)``: the largest candidate, and the point where it
    was found (for a quotient, the midpoint of its pair), shape ``x.shape[1:]``.

    Deviation from "gradient ascent on :math:`\|\nabla T\|`": for ReLU networks :math:`\nabla T`
    is piecewise constant, so :math:`\|\nabla T\|` has zero gradient almost everywhere; its
    difference quotient does not. ``seed`` fixes the random pair directions.
    """
    check_pixels(x, "x")
    check_count(steps, "steps", minimum=0)
    check_positive(alpha, "alpha")
    check_fits(model, x)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    a = x.detach().clone()
    b = (a + alpha * torch.randn(a.shape, generator=gen, device=a.device)).clamp(0, 1)
    for _ in range(steps):
        with torch.enable_grad():
            a, b = a.requires_grad_(True), b.requires_grad_(True)
            q = (model(a) - model(b)).flatten(1).norm(dim=1) / (_per_sample_norm(a - b).flatten())
            g_a, g_b = torch.autograd.grad(q.sum(), (a, b))  # (B, ...) each
        a = (a + alpha * g_a / _per_sample_norm(g_a)).clamp(0, 1).detach()
        b = (b + alpha * g_b / _per_sample_norm(g_b)).clamp(0, 1).detach()
    with torch.no_grad():
        gap = (a - b).flatten(1).norm(dim=1)  # (B,)
        q = (model(a) - model(b)).flatten(1).norm(dim=1) / gap.clamp_min(1e-12)
        q = torch.where(gap > 1e-6, q, torch.zeros_like(q))  # coincident points say nothing
    t = torch.linspace(0, 1, 9, device=x.device, dtype=x.dtype).view(1, -1, *[1] * (x.ndim - 1))
    segments = (a.unsqueeze(1) + t * (b - a).unsqueeze(1)).flatten(0, 1)  # (B * 9, ...)
    points = torch.cat([x, segments])  # (B * 10, ...)
    local = jacobian_spectral_norm(model, points)  # (B * 10,)
    best, best_q = int(local.argmax()), int(q.argmax())
    if q[best_q] > local[best]:  # the quotient of a pair beats every probed local constant
        return float(q[best_q]), ((a[best_q] + b[best_q]) / 2).detach()
    return float(local[best]), points[best].detach()


def secant_slopes(
    f: Callable[[torch.Tensor], torch.Tensor], a: float, b: float, n: int = 200
) -> torch.Tensor:
    r"""The slopes :math:`|f(x_j) - f(x_i)| / |x_j - x_i|` of all secants between the ``n``
    points :math:`x_i` of an even grid on :math:`[a, b]`, shape ``(n (n - 1) / 2,)``.

    Their maximum is a lower bound of the Lipschitz constant of ``f`` on :math:`[a, b]` (and tends
    to it as ``n`` grows, for a continuous ``f``). ``f`` maps a float64 tensor of points to a
    tensor of values, e.g. ``torch.sqrt`` or ``lambda x: 2 * x + 1``.
    """
    for value, name in ((a, "a"), (b, "b")):
        if not isinstance(value, int | float) or not torch.isfinite(torch.tensor(float(value))):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not a < b:
        raise ValueError(f"the interval must have a < b, got a={a!r}, b={b!r}")
    check_count(n, "n", minimum=2)
    x = torch.linspace(a, b, n, dtype=torch.float64)  # (n,)
    fx = f(x).to(torch.float64)  # (n,)
    if fx.shape != x.shape or not torch.isfinite(fx).all():
        raise ValueError("f must map the n grid points to n finite values")
    i, j = torch.triu_indices(n, n, offset=1)  # every pair i < j
    return (fx[j] - fx[i]).abs() / (x[j] - x[i])  # (n (n - 1) / 2,)


def _per_sample_norm(v: torch.Tensor) -> torch.Tensor:
    r""":math:`\|v_i\|_2` shaped ``(B, 1, ..., 1)``, never zero (guards a division)."""
    return v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (v.ndim - 1))
