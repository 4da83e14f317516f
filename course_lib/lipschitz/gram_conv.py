r"""Gram iteration for convolutions, in real arithmetic and on the frequencies that matter.

:func:`course_lib.lipschitz.layer_norms.conv_norm_gram` bounds the norm of a stride-1 circular
convolution by :math:`\max_\omega \|G_T(\omega)\|_F^{2^{-T}}`, where :math:`G_0(\omega) = \hat K
(\omega)` is the :math:`c_{out}\times c_{in}` Fourier block of the kernel and :math:`G_{t+1} = G_t^*
G_t` (Delattre, Barthélemy, Araujo, Allauzen, 2023, Alg. 3). This module computes the same bound
faster than the textbook version, with three changes that leave its value unchanged:

1. **The blocks by one matrix product.** A :math:`k_1\times k_2` kernel has :math:`k_1k_2` taps,
   so :math:`\hat K(\omega) = \sum_{a,b} K_{ab}\, e^{-2\pi i (a\omega_1 + b\omega_2)/n}` is a
   (frequencies × taps) @ (taps × channels²) product: :math:`\hat K = A + iB` with real
   :math:`A, B` (one-sided spectrum: a real kernel's block at :math:`-\omega` is the conjugate,
   with the same norm).
2. **Real arithmetic.** Batched complex matrix products are several times slower than real ones on
   a CPU. From :math:`t = 1` on, :math:`G_t = S + iT` is Hermitian (:math:`S` symmetric, :math:`T`
   antisymmetric), and with :math:`P = ST`,

   .. math::  (S + iT)^2 = \big[(S+T)(S-T) + P + P^\top\big] + i\,\big[P - P^\top\big]

   costs two real products (the first step, :math:`\hat K^*\hat K = A^\top A + B^\top B +
   i(A^\top B - B^\top A)`, costs two as well).
3. **Pruning.** After each step every block has an upper bound :math:`u_\omega =
   \|G_t(\omega)\|_F^{2^{-t}} \ge \sigma_1(\omega)` and a lower bound :math:`l_\omega \le
   \sigma_1(\omega)` from the Rayleigh quotient :math:`v^* G_t v / v^* v \le \lambda_{\max}(G_t) =
   \sigma_1^{2^t}` at the block's largest column :math:`v`. A block with :math:`u_\omega <
   \max_{\omega'} l_{\omega'}` cannot hold the maximum and is dropped; the block with the largest
   :math:`l` is never dropped, so the final maximum over the remaining blocks is the same number
   as over all of them, and still an upper bound. A relative margin of :data:`PRUNE_MARGIN`
   guards against rounding. On a random 64×64×3×3 kernel at :math:`n = 32` the 544 one-sided
   blocks have :math:`\sigma_1` within 8% of each other, so pruning starts only at :math:`t = 4`.

Only :math:`u` enters the result; :math:`l` only decides which blocks to keep.
"""

from __future__ import annotations

import math

import torch

from ..validate import check_count

PRUNE_MARGIN = 1e-3  # drop a block only if its upper bound is below max lower bound by 0.1%


def conv_fft_blocks_real(K: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Real and imaginary parts :math:`A, B` of the one-sided Fourier blocks of ``K``
    ``(c_out, c_in, k1, k2)`` on :math:`n\times n` inputs, each ``(n (n//2+1), c_out, c_in)``;
    equal to ``torch.fft.rfft2(K, s=(n, n))`` rearranged, by one matrix product per part."""
    c_out, c_in, k1, k2 = K.shape
    dev, dt = K.device, K.dtype
    w1 = torch.arange(n, device=dev, dtype=dt).view(-1, 1, 1, 1)  # frequencies along height
    w2 = torch.arange(n // 2 + 1, device=dev, dtype=dt).view(1, -1, 1, 1)  # one-sided width
    a = torch.arange(k1, device=dev, dtype=dt).view(1, 1, -1, 1)  # kernel taps
    b = torch.arange(k2, device=dev, dtype=dt).view(1, 1, 1, -1)
    phase = ((2 * math.pi / n) * (w1 * a + w2 * b)).reshape(-1, k1 * k2)  # (F, k1 k2)
    taps = K.permute(2, 3, 0, 1).reshape(k1 * k2, c_out * c_in)  # (k1 k2, c_out c_in)
    A = (torch.cos(phase) @ taps).view(-1, c_out, c_in)  # (F, c_out, c_in)
    B = -(torch.sin(phase) @ taps).view(-1, c_out, c_in)
    return A, B


def hermitian_square(S: torch.Tensor, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Real and imaginary parts of :math:`(S + iT)^2` for symmetric :math:`S` and antisymmetric
    :math:`T` (a Hermitian matrix), ``(F, m, m)`` each, by two real matrix products."""
    P = S @ T  # (F, m, m)
    return torch.baddbmm(P + P.mT, S + T, S - T), P - P.mT


def conv_norm_gram_pruned(K: torch.Tensor, n: int, iterations: int = 6) -> torch.Tensor:
    r"""The Gram-iteration bound :math:`\max_\omega \|G_T(\omega)\|_F^{2^{-T}}` (``T =
    iterations``) of the stride-1 circular convolution with kernel ``K`` on :math:`n\times n`
    inputs, computed as described in the module docstring. Differentiable in ``K``."""
    check_count(iterations, "iterations", minimum=1)
    A, B = conv_fft_blocks_real(K, n)  # (F, c_out, c_in) each
    if A.shape[-2] < A.shape[-1]:  # G^* G on the smaller side; the norm is the same
        A, B = A.mT, -B.mT  # the conjugate transpose
    AB = torch.cat([A, B], dim=-2)  # (F, 2 c_out, c_in)
    P = A.mT @ B
    S, T = AB.mT @ AB, P - P.mT  # G_1 = K^* K, Hermitian, eigenvalues sigma^2
    log_scale = torch.zeros(S.shape[0], dtype=S.dtype, device=S.device)  # G_t = e^{log_scale}(S+iT)
    for t in range(2, iterations + 1):
        r = _frobenius(S, T)
        r = torch.where(r > 0, r, torch.ones_like(r))  # a zero block stays 0 (bound 0, not NaN)
        S, T = S / r[:, None, None], T / r[:, None, None]
        log_scale = 2 * (log_scale + torch.log(r))
        S, T = hermitian_square(S, T)  # G_t
        keep = _blocks_that_may_hold_the_max(S, T, log_scale, t)
        S, T, log_scale = S[keep], T[keep], log_scale[keep]
    return torch.exp((torch.log(_frobenius(S, T)) + log_scale) / 2**iterations).max()


def _blocks_that_may_hold_the_max(S, T, log_scale, t: int) -> torch.Tensor:
    """Mask of the blocks whose upper bound is not below the largest lower bound (with margin)."""
    with torch.no_grad():
        log_u = (torch.log(_frobenius(S, T)) + log_scale) / 2**t  # (F,) log upper bounds
        log_l = (torch.log(_rayleigh_at_largest_column(S, T)) + log_scale) / 2**t  # (F,)
        return log_u >= log_l.max() + math.log1p(-PRUNE_MARGIN)


def _rayleigh_at_largest_column(S: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    r""":math:`v^* G v / v^* v \le \lambda_{\max}(G)` for :math:`G = S + iT` at its column of
    largest norm :math:`v = s + iw`, per block, ``(F,)`` (0 for a zero block)."""
    col = (
        torch.linalg.vector_norm(S, dim=-2).square() + torch.linalg.vector_norm(T, dim=-2).square()
    )
    j = col.argmax(-1)  # (F,) column index
    idx = torch.arange(S.shape[0], device=S.device)
    s, w = S[idx, :, j], T[idx, :, j]  # (F, m) each
    sw = torch.stack([s, w], dim=-1)  # (F, m, 2)
    Ssw, Tsw = S @ sw, T @ sw  # (F, m, 2) each
    Gv_re = Ssw[..., 0] - Tsw[..., 1]  # real part of G v
    Gv_im = Ssw[..., 1] + Tsw[..., 0]  # imaginary part
    vGv = (s * Gv_re + w * Gv_im).sum(-1)  # real part of v^* G v (G Hermitian: it is real)
    vv = (s.square() + w.square()).sum(-1)
    return torch.where(vv > 0, vGv / vv.clamp_min(1e-300), torch.zeros_like(vv)).clamp_min(1e-300)


def _frobenius(S: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """``‖S + iT‖_F`` per block, ``(F,)``."""
    return torch.hypot(
        torch.linalg.vector_norm(S, dim=(-2, -1)), torch.linalg.vector_norm(T, dim=(-2, -1))
    )
