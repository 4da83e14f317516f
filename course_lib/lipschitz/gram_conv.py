r"""Gram iteration for convolutions: the same bound as the textbook loop, several times faster.

:func:`course_lib.lipschitz.layer_norms.conv_norm_gram` bounds the norm of a stride-1 circular
convolution by :math:`\max_\omega \|G_T(\omega)\|_F^{2^{-T}}`, where :math:`\hat K(\omega)` is the
:math:`c_{out}\times c_{in}` Fourier block of the kernel, :math:`G_1 = \hat K^*\hat K` and
:math:`G_{t+1} = G_t^2` (Delattre, Barthélemy, Araujo, Allauzen, 2023, Alg. 3). The textbook
version (``spectral_norm_gram(conv_fft_blocks(K, n))``) squares every complex block at every step.
This module computes the same number with four changes that leave its value unchanged:

1. **The Gram of a convolution is a convolution.** :math:`\hat K(\omega)^*\hat K(\omega) =
   \sum_d H_d\, e^{-2\pi i\,\omega\cdot d/n}` with the :math:`(2k_1-1)(2k_2-1)`-tap kernel
   :math:`H_d = \sum_{b - a = d} K_a^\top K_b` (:math:`a, b` the kernel's taps). So :math:`G_1`
   needs no product of blocks: one product of all tap pairs, then a
   (frequencies × offsets) @ (offsets × channels²) matrix product gives :math:`G_1 = S + iT` for
   all frequencies at once (one-sided: a real kernel's block at :math:`-\omega` is the
   conjugate, with the same norm). For a 64×64×3×3 kernel and :math:`n = 32` that is about 3×
   less arithmetic than the FFT followed by :math:`\hat K^*\hat K` block by block.
2. **Real arithmetic.** From :math:`t = 1` on, :math:`G_t = S + iT` is Hermitian (:math:`S`
   symmetric, :math:`T` antisymmetric):

   .. math::  (S + iT)^2 = (S^2 - T^2) + i\,(ST + TS),

   four real products, each pair accumulated in place (``baddbmm_``), where complex products are
   several times slower on a CPU. At this size memory, not arithmetic, costs the most: a fourth
   product is cheaper than one more pass over a 9 MB tensor (:math:`TS = -(ST)^\top` would save it).
3. **One scale for all blocks.** Squaring :math:`2^T` times overflows, so each step divides by
   :math:`r^2` with :math:`r = \max_\omega \|G_t(\omega)\|_F`, folded into the coefficients of the
   products, and keeps :math:`\log r` (Delattre et al.'s rescaling, with one scalar instead of one
   per block). The scale is a constant for autograd: the iterate is homogeneous in it, so the
   gradient of the bound is unchanged. A block far below the largest may underflow to 0; it
   could not hold the maximum anyway.
4. **Pruning.** After each step every block has an upper bound :math:`u_\omega =
   \|G_t(\omega)\|_F^{2^{-t}} \ge \sigma_1(\omega)`, and a few blocks get a lower bound from the
   Rayleigh quotient :math:`v^* G_t v / v^* v \le \lambda_{\max}(G_t) = \sigma_1^{2^t}` at their
   largest column :math:`v`. A block with :math:`u_\omega < \max l` cannot hold the maximum and is
   dropped; :math:`u` only decreases with :math:`t` (:math:`\|G^2\|_F \le \|G\|_F^2`), so the
   final maximum over the remaining blocks is the same number as over all of them, and still an
   upper bound. A relative margin of :data:`PRUNE_MARGIN` guards against rounding. On a random
   64×64×3×3 kernel at :math:`n = 32` the 544 blocks' :math:`\sigma_1` lie within 8% of each other,
   so pruning starts only at :math:`t = 3`; on the two trained convolutions of ``mnist_lip_cnn``,
   bounded as their polyphase kernels on tori of side 16 and 9, 3 blocks of 144 and 3 of 45 are
   left after :math:`t = 2`.
"""

from __future__ import annotations

import math

import torch

from ..validate import check_count

PRUNE_MARGIN = 1e-3  # drop a block only if its upper bound is below max lower bound by 0.1%
CANDIDATES = 8  # blocks of largest upper bound on which the lower bound is computed


def conv_gram_blocks(K: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Real and imaginary parts :math:`S, T` of :math:`G_1(\omega) = \hat K(\omega)^*\hat K
    (\omega)` for the one-sided frequencies of ``K`` ``(c_out, c_in, k1, k2)`` on :math:`n\times n`
    inputs, each ``(n (n//2+1), m, m)`` with :math:`m = \min(c_{in}, c_{out})`, from the Gram
    kernel :math:`H` (module docstring, point 1)."""
    if K.shape[1] > K.shape[0]:  # K^T has blocks K^(w)^T: same singular values, smaller Gram
        K = K.transpose(0, 1)
    c_out, m, k1, k2 = K.shape
    dev, dt = K.device, K.dtype
    taps = K.permute(2, 3, 0, 1).reshape(k1 * k2, c_out, m)  # (k1 k2, c_out, m): K_a
    pairs = torch.einsum("aoi,boj->abij", taps, taps)  # (k1 k2, k1 k2, m, m): K_a^T K_b
    pos = torch.stack(
        torch.meshgrid(torch.arange(k1, device=dev), torch.arange(k2, device=dev), indexing="ij"),
        dim=-1,
    ).reshape(-1, 2)  # (k1 k2, 2) tap positions
    d = pos[None, :, :] - pos[:, None, :]  # (a, b, 2): offset b - a
    d_index = ((d[..., 0] + k1 - 1) * (2 * k2 - 1) + d[..., 1] + k2 - 1).reshape(-1)
    n_offsets = (2 * k1 - 1) * (2 * k2 - 1)
    H = pairs.new_zeros(n_offsets, m * m).index_add(0, d_index, pairs.reshape(-1, m * m))
    d1 = torch.arange(1 - k1, k1, device=dev, dtype=dt).view(1, 1, -1, 1)  # offsets, rows
    d2 = torch.arange(1 - k2, k2, device=dev, dtype=dt).view(1, 1, 1, -1)  # offsets, columns
    w1 = torch.arange(n, device=dev, dtype=dt).view(-1, 1, 1, 1)  # frequencies along height
    w2 = torch.arange(n // 2 + 1, device=dev, dtype=dt).view(1, -1, 1, 1)  # one-sided width
    phase = ((2 * math.pi / n) * (w1 * d1 + w2 * d2)).reshape(-1, n_offsets)  # (F, offsets)
    S = (torch.cos(phase) @ H).view(-1, m, m)  # (F, m, m), symmetric
    T = (torch.sin(phase) @ H).neg_().view(-1, m, m)  # (F, m, m), antisymmetric
    return S, T


def hermitian_square(
    S: torch.Tensor, T: torch.Tensor, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Real and imaginary parts of :math:`c\,(S + iT)^2` for symmetric :math:`S`, antisymmetric
    :math:`T` (a Hermitian matrix) and a number :math:`c` = ``scale``, ``(F, m, m)`` each, by four
    real matrix products: :math:`c(S^2 - T^2)` and :math:`c(ST + TS)`."""
    re = (S @ S).baddbmm_(T, T, beta=scale, alpha=-scale)  # c (S^2 - T^2), in place
    im = (S @ T).baddbmm_(T, S, beta=scale, alpha=scale)  # c (ST + TS)
    return re, im


def conv_norm_gram_pruned(K: torch.Tensor, n: int, iterations: int = 6) -> torch.Tensor:
    r"""The Gram-iteration bound :math:`\max_\omega \|G_T(\omega)\|_F^{2^{-T}}` (``T =
    iterations``) of the stride-1 circular convolution with kernel ``K`` on :math:`n\times n`
    inputs, computed as described in the module docstring. Differentiable in ``K``."""
    check_count(iterations, "iterations", minimum=1)
    S, T = conv_gram_blocks(K, n)  # G_1, (F, m, m) each
    log_scale = 0.0  # the true G_t is e^{log_scale} (S + iT), one number for all blocks
    frob = _frobenius(S, T)  # (F,)
    for t in range(2, iterations + 1):
        r = float(frob.detach().max())
        if r == 0.0:  # a zero kernel: the bound is 0 (kept in the graph)
            return frob.sum() * 0.0
        S, T = hermitian_square(S, T, scale=r**-2)  # G_t / e^{log_scale}
        log_scale = 2 * log_scale + 2 * math.log(r)
        frob = _frobenius(S, T)
        keep = _blocks_that_may_hold_the_max(S, T, frob, log_scale, t)
        if not keep.all():
            S, T, frob = S[keep], T[keep], frob[keep]
    return torch.exp((torch.log(frob.max()) + log_scale) / 2**iterations)


def _blocks_that_may_hold_the_max(S, T, frob, log_scale: float, t: int) -> torch.Tensor:
    """Mask of the blocks whose upper bound is not below the largest lower bound (with margin).

    The lower bound is taken on the :data:`CANDIDATES` blocks of largest upper bound only: any
    lower bound of any block will do, and the maximum sits among those blocks in practice."""
    with torch.no_grad():
        log_u = (torch.log(frob) + log_scale) / 2**t  # (F,) log upper bounds
        top = log_u.topk(min(CANDIDATES, log_u.numel())).indices  # (k,) candidate blocks
        log_l = (torch.log(_rayleigh_at_largest_column(S[top], T[top])) + log_scale) / 2**t
        return log_u >= log_l.max() + math.log1p(-PRUNE_MARGIN)


def _rayleigh_at_largest_column(S: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    r""":math:`v^* G v / v^* v \le \lambda_{\max}(G)` for :math:`G = S + iT` at its column of
    largest norm :math:`v = s + iw`, per block, ``(F,)`` (the smallest float for a zero block).
    ``G`` is Hermitian, so column :math:`j` is the conjugate of row :math:`j` (rows are
    contiguous: a faster reduction)."""
    row = S.square().sum(-1) + T.square().sum(-1)  # (F, m) squared row norms = column norms
    j = row.argmax(-1)  # (F,) column index
    idx = torch.arange(S.shape[0], device=S.device)
    s, w = S[idx, j], -T[idx, j]  # (F, m) each: column j = conjugate of row j
    sw = torch.stack([s, w], dim=-1)  # (F, m, 2)
    Ssw, Tsw = S @ sw, T @ sw  # (F, m, 2) each
    Gv_re = Ssw[..., 0] - Tsw[..., 1]  # real part of G v
    Gv_im = Ssw[..., 1] + Tsw[..., 0]  # imaginary part
    vGv = (s * Gv_re + w * Gv_im).sum(-1)  # real part of v^* G v (G Hermitian: it is real)
    vv = (s.square() + w.square()).sum(-1)
    tiny = torch.finfo(S.dtype).tiny
    return torch.where(vv > 0, vGv / vv.clamp_min(tiny), 0.0).clamp_min(tiny)


def _frobenius(S: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """``‖S + iT‖_F`` per block, ``(F,)``."""
    return torch.hypot(
        torch.linalg.vector_norm(S, dim=(-2, -1)), torch.linalg.vector_norm(T, dim=(-2, -1))
    )
