r"""Spectral norms of dense and convolutional layers: what is exact, what is a bound, what is not.

The Lipschitz constant of a layer :math:`x \mapsto Wx + b` in :math:`\ell_2` is its largest
singular value :math:`\|W\|_2 = \sigma_1(W)`. Five ways to get it:

* exact: an SVD (:func:`spectral_norm_exact`), cubic in the size;
* **power iteration** (:func:`spectral_norm_power`): :math:`u \leftarrow W^\top W u / \|\cdot\|`,
  cheap and warm-startable, but a **lower** bound until it has converged;
* **Gram iteration** (Delattre et al., 2023, :func:`spectral_norm_gram`): a guaranteed
  **upper** bound that converges super-exponentially;
* for a convolution on :math:`n \times n` inputs with **circular** padding, the exact spectrum from
  the FFT: the operator is block-diagonal in the Fourier basis, one :math:`c_{out}\times c_{in}`
  block per frequency (Sedghi, Gupta, Long, 2019, :func:`conv_spectrum_fft`), and Gram iteration
  batched over those blocks (:func:`conv_norm_gram`);
* power iteration on the real ``conv2d`` / ``conv_transpose2d`` pair with the layer's own padding
  and stride (:func:`conv_norm_power`): the ground truth the bounds are tested against.

The lecture's "reshape the kernel to :math:`hwC_{in}\times C_{out}` and take its spectral norm"
(:func:`conv_reshaped_norm`) is **not** a bound; :func:`conv_reshaped_bound` is the corrected one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..validate import check_count
from .gram_conv import conv_norm_gram_pruned

# ----- dense matrices (also batched: (..., m, n)) ---------------------------------------------


def spectral_norm_exact(W: torch.Tensor) -> torch.Tensor:
    r""":math:`\sigma_1(W)` by an SVD in float64; ``W`` ``(..., m, n)`` gives ``(...)``."""
    return torch.linalg.matrix_norm(W.detach().double(), ord=2)


def spectral_norm_power(
    W: torch.Tensor, iterations: int = 20, u: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Power iteration on :math:`W^\top W` (von Mises, 1929; Miyato et al., 2018 keep ``u``
    between training steps): :math:`u \leftarrow W^\top W u / \|W^\top W u\|`, then
    :math:`\sigma = \|W u\|`.

    Returns ``(sigma, u)``; pass ``u`` back to warm-start. :math:`\sigma \le \sigma_1(W)` always
    (it is :math:`\|Wu\|` for a unit :math:`u`): a **lower** bound. After :math:`t` steps the
    angle between :math:`u_t` and the top right singular vector shrinks like
    :math:`(\sigma_2/\sigma_1)^{2t}`, and the estimate (a Rayleigh quotient of :math:`W^\top W`)
    is off by a relative error of order :math:`(\sigma_2/\sigma_1)^{4t}`: slow only when the top two
    singular values are close. ``W`` ``(..., m, n)``, real or complex.
    """
    check_count(iterations, "iterations", minimum=1)
    W = W.detach()
    if u is None:
        gen = torch.Generator(device=W.device).manual_seed(0)
        u = torch.randn(*W.shape[:-2], W.shape[-1], 1, generator=gen, device=W.device)
        u = u.to(W.dtype)  # a real start is fine for complex W (FFT blocks)
    for _ in range(iterations):
        u = W.mH @ (W @ u)  # (..., n, 1)
        u = u / u.norm(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    sigma = (W @ u).norm(dim=(-2, -1))  # (...)
    return sigma, u


def spectral_norm_gram(W: torch.Tensor, iterations: int = 6) -> torch.Tensor:
    r"""Gram iteration (Delattre, Barthélemy, Araujo, Allauzen, 2023, Alg. 1, with their
    rescaling): :math:`G_0 = W`, :math:`G_{t+1} = G_t^* G_t`, and
    :math:`\sigma_1(W) \le \|G_T\|_F^{2^{-T}}`.

    Why it is a bound: :math:`\|G_T\|_F^{2^{-T}} = (\sum_i \sigma_i^{2^{T+1}})^{2^{-(T+1)}}`, which
    lies between :math:`\sigma_1` and :math:`\text{rank}^{2^{-(T+1)}}\sigma_1`. Raising to the
    power :math:`2^T` overflows after a few steps, so each step divides :math:`G` by
    :math:`r = \|G\|_F` and accumulates :math:`\log r` (the rescaling trick). ``W`` ``(..., m, n)``,
    complex allowed (FFT blocks); iterates on the smaller Gram side. Differentiable.
    """
    check_count(iterations, "iterations", minimum=1)
    G = W if W.shape[-2] >= W.shape[-1] else W.mT  # G^* G is the smaller of the two
    log_scale = torch.zeros(W.shape[:-2], dtype=W.real.dtype, device=W.device)  # (...)
    for _ in range(iterations):
        r = _frobenius(G)  # (...)
        r = torch.where(r > 0, r, torch.ones_like(r))  # a zero block stays 0, bound 0 (not NaN)
        G = G / r[..., None, None]
        log_scale = 2 * (log_scale + torch.log(r))
        G = G.mH @ G
    return torch.exp((torch.log(_frobenius(G)) + log_scale) / 2**iterations)


def _frobenius(G: torch.Tensor) -> torch.Tensor:
    """``‖G‖_F`` over the last two dims; on the real view for complex input (about 10x faster on
    a CPU than ``matrix_norm(ord="fro")`` of a complex tensor)."""
    if G.is_complex():
        return torch.view_as_real(G).square().sum((-3, -2, -1)).sqrt()
    return G.square().sum((-2, -1)).sqrt()


# ----- convolutions (weight (C_out, C_in, k1, k2), PyTorch's layout) ---------------------------


def conv_reshaped_norm(K: torch.Tensor) -> torch.Tensor:
    r""":math:`\|\tilde W\|_2` of the kernel reshaped to :math:`C_{out} \times C_{in} k_1 k_2`
    (the lecture's option 1, and what ``torch.nn.utils.spectral_norm`` normalises).

    **Not** a bound of the convolution's norm: a kernel that repeats the same row at every
    tap has :math:`\|\tilde W\|_2 = \sqrt{k_1 k_2}\,` times too small a value (see the tests
    and notebook 5.4).
    """
    _check_kernel(K)
    return spectral_norm_exact(K.reshape(K.shape[0], -1))


def conv_reshaped_bound(K: torch.Tensor, stride: int = 1) -> torch.Tensor:
    r"""The corrected bound :math:`\sqrt{\lceil k_1/s\rceil\lceil k_2/s\rceil}\;\|\tilde W\|_2`.

    Each output pixel is :math:`\tilde W` applied to one input patch, so
    :math:`\|y\|^2 \le \|\tilde W\|^2 \sum_p \|P_p x\|^2`, and every input pixel lies in at most
    :math:`\lceil k_1/s\rceil\lceil k_2/s\rceil` patches (Tsuzuku et al., 2018; deel-torchlip's
    ``lconv_norm``). Valid for zero and circular padding, any input size; often loose.
    """
    check_count(stride, "stride", minimum=1)
    k1, k2 = K.shape[-2:]
    return math.sqrt(math.ceil(k1 / stride) * math.ceil(k2 / stride)) * conv_reshaped_norm(K)


def conv_fft_blocks(K: torch.Tensor, n: int, onesided: bool = True) -> torch.Tensor:
    r"""The Fourier blocks :math:`\hat K(\omega) \in \mathbb C^{c_{out}\times c_{in}}` of the
    circular convolution on :math:`n \times n` inputs, shape ``(n, n', c_out, c_in)``
    (:math:`n' = n//2+1` if ``onesided``: a real kernel's blocks at :math:`-\omega` are the
    conjugates, with the same singular values)."""
    _check_kernel(K)
    check_count(n, "n", minimum=1)
    if n < max(K.shape[-2:]):
        raise ValueError(f"input size n must be >= the kernel size {tuple(K.shape[-2:])}, got {n}")
    fft = torch.fft.rfft2 if onesided else torch.fft.fft2
    return fft(K, s=(n, n)).permute(2, 3, 0, 1)  # (n, n', c_out, c_in)


def conv_spectrum_fft(K: torch.Tensor, n: int) -> torch.Tensor:
    r"""All :math:`n^2 \min(c_{in}, c_{out})` singular values of the stride-1 **circular**
    convolution on :math:`n \times n` inputs (Sedghi et al., 2019, Thm. 6), sorted descending.

    The union over frequencies of the singular values of :math:`\hat K(\omega)`; exact for
    circular padding only."""
    blocks = conv_fft_blocks(K.detach().double(), n, onesided=False)
    return torch.linalg.svdvals(blocks).flatten().sort(descending=True).values


def conv_norm_fft(K: torch.Tensor, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The exact norm of the circular, stride-1 convolution on :math:`n\times n` inputs:
    :math:`\max_\omega \sigma_1(\hat K(\omega))` by a batched SVD of the one-sided blocks.

    ``dtype``: the real precision of the computation, float64 by default (the reference value);
    pass ``torch.float32`` to time it against float32 estimates at equal precision."""
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    blocks = conv_fft_blocks(K.detach().to(dtype), n)
    return torch.linalg.matrix_norm(blocks, ord=2).max()


def conv_norm_gram(K: torch.Tensor, n: int, iterations: int = 6) -> torch.Tensor:
    r"""Gram iteration batched over the FFT blocks, max over frequencies (Delattre et al., 2023,
    Alg. 3): an upper bound of :func:`conv_norm_fft`, differentiable (usable in training).

    The value of ``spectral_norm_gram(conv_fft_blocks(K, n), iterations).max()``, computed in
    real arithmetic on the blocks that may hold the maximum
    (:func:`course_lib.lipschitz.gram_conv.conv_norm_gram_pruned`)."""
    _check_kernel(K)
    check_count(n, "n", minimum=1)
    if n < max(K.shape[-2:]):
        raise ValueError(f"input size n must be >= the kernel size {tuple(K.shape[-2:])}, got {n}")
    return conv_norm_gram_pruned(K, n, iterations)


def conv_norm_bound(
    K: torch.Tensor, n: int, stride: int = 1, padding: int = 0, iterations: int = 6
) -> torch.Tensor:
    r"""A guaranteed upper bound of the norm of ``conv2d(·, K, stride, padding)`` with **zero**
    padding on :math:`n\times n` inputs.

    The zero-padded, strided convolution keeps a subset of the outputs of the circular
    convolution on the padded :math:`(n+2p)\times(n+2p)` torus applied to the zero-embedded input
    (no output reads across the wrap), and dropping outputs or embedding inputs cannot raise a
    norm. So its norm is :math:`\le` :func:`conv_norm_gram` at size :math:`n + 2p`."""
    check_count(stride, "stride", minimum=1)
    check_count(padding, "padding", minimum=0)
    return conv_norm_gram(K, n + 2 * padding, iterations)


def conv_norm_power(
    K: torch.Tensor,
    n: int,
    stride: int = 1,
    padding: int = 0,
    iterations: int = 50,
    u: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Power iteration on the real operator :math:`A = ` ``conv2d(·, K, stride, padding)`` on
    ``(C_in, n, n)`` inputs, with :math:`A^\top` = ``conv_transpose2d`` (its adjoint, with the
    ``output_padding`` that restores the input size, per spatial dimension for a
    :math:`k_1 \ne k_2` kernel). Returns ``(sigma, u)``; ``sigma`` is a lower bound of
    :math:`\|A\|_2` that converges to it: the reference for every other estimate."""
    _check_kernel(K)
    check_count(iterations, "iterations", minimum=1)
    check_count(stride, "stride", minimum=1)
    check_count(padding, "padding", minimum=0)
    check_count(n, "n", minimum=1)
    if n + 2 * padding < max(K.shape[-2:]):
        raise ValueError(f"input size n + 2*padding must be >= the kernel size, got n={n}")
    K = K.detach()
    out = [(n + 2 * padding - k) // stride + 1 for k in K.shape[-2:]]  # per dimension
    extra = tuple(  # output_padding of A^T, per dimension: (n + 2p - k) mod s
        n - ((o - 1) * stride - 2 * padding + k) for o, k in zip(out, K.shape[-2:], strict=True)
    )
    if u is None:
        gen = torch.Generator(device=K.device).manual_seed(0)
        u = torch.randn(1, K.shape[1], n, n, generator=gen, device=K.device).to(K.dtype)
    for _ in range(iterations):
        v = F.conv2d(u, K, stride=stride, padding=padding)  # (1, C_out, out_1, out_2)
        u = F.conv_transpose2d(v, K, stride=stride, padding=padding, output_padding=extra)
        u = u / u.norm().clamp_min(1e-30)  # (1, C_in, n, n)
    return F.conv2d(u, K, stride=stride, padding=padding).norm(), u


def conv_operator_matrix(
    K: torch.Tensor, n: int, stride: int = 1, padding: int = 0, circular: bool = False
) -> torch.Tensor:
    r"""The dense matrix of ``conv2d(·, K, stride, padding)`` on ``(C_in, n, n)`` inputs, shape
    ``(C_out·out·out, C_in·n·n)``: the convolution applied to every basis image. For small sizes
    only (tests, the notebook's ground truth); ``circular`` pads by wrapping around."""
    _check_kernel(K)
    d = K.shape[1] * n * n
    basis = torch.eye(d, dtype=K.dtype, device=K.device).view(d, K.shape[1], n, n)
    if circular:
        p = (padding,) * 4
        cols = F.conv2d(F.pad(basis, p, mode="circular"), K, stride=stride)
    else:
        cols = F.conv2d(basis, K, stride=stride, padding=padding)  # (d, C_out, out, out)
    return cols.reshape(d, -1).T


def _check_kernel(K: torch.Tensor) -> None:
    if not isinstance(K, torch.Tensor) or K.ndim != 4:
        raise ValueError(f"K must be a conv weight of shape (C_out, C_in, k1, k2), got {K!r:.60}")
