r"""Guaranteed norms of real ``nn.Conv2d`` layers (zero padding, stride) and their spectral
normalization: what lets a CNN carry a Lipschitz certificate.

A layer ``conv2d(·, K, stride=s, padding=p)`` on :math:`C_{in}\times H\times W` inputs is a linear
map :math:`A`; its :math:`\ell_2` Lipschitz constant is :math:`\|A\|_2`, which depends on the input
size. :func:`conv_norm_upper` gives a guaranteed upper bound, by the argument below; the ground
truth it is tested against is power iteration on the real operator
(:func:`course_lib.lipschitz.layer_norms.conv_norm_power`).

**Proof that the bound holds.** Take a square torus of side :math:`N`, a multiple of :math:`s`
with :math:`N \ge \max(H, W) + 2p`.

1. *Embedding.* Put the zero-padded input (side :math:`H + 2p` by :math:`W + 2p`) in the corner
   of an :math:`N \times N` image of zeros: :math:`E`, an isometry (:math:`\|Ex\| = \|x\|`).
2. *Circular strided convolution.* :math:`(C_s z)[i] = \sum_u K[u]\, z[(s i + u) \bmod N]` for
   :math:`i \in \{0..N/s-1\}^2`. An output of the real layer, :math:`i \le o - 1` with
   :math:`o = \lfloor (n + 2p - k)/s\rfloor + 1`, reads :math:`s i + u \le n + 2p - 1 < N`: it
   never wraps, so the real layer is :math:`A = P\,C_s\,E` with :math:`P` keeping those outputs
   (a coordinate projection, norm 1). Hence :math:`\|A\|_2 \le \|C_s\|_2`.
3. *Polyphase.* Split the torus image into its :math:`s^2` sub-grids
   :math:`z_\alpha[m] = z[s m + \alpha]` (a permutation of pixels: an isometry) and the kernel into
   :math:`K_\alpha[a] = K[s a + \alpha]`. Then :math:`C_s z = \sum_\alpha K_\alpha \star
   z_\alpha`: a **stride-1** circular convolution on the :math:`N/s` torus with
   :math:`s^2 C_{in}` input channels and :math:`\lceil k/s\rceil` taps (:func:`polyphase_kernel`).
4. Its norm is :math:`\max_\omega \sigma_1(\hat K'(\omega))` over the Fourier blocks (Sedghi,
   Gupta, Long, 2019): :func:`~course_lib.lipschitz.layer_norms.conv_norm_fft` (float64 SVD; exact
   up to rounding of order :math:`10^{-15}` relative). For :math:`s = 1` this is the usual
   circular bound on the padded size :math:`n + 2p`.

The corrected reshape bound :math:`\sqrt{\lceil k_1/s\rceil\lceil k_2/s\rceil}\,\|\tilde W\|_2`
(:func:`~course_lib.lipschitz.layer_norms.conv_reshaped_bound`) also holds, so the minimum of the
two is returned. Step 3 is ours (the polyphase trick of filter banks); without it the stride would
be ignored and a stride-2 layer over-estimated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validate import check_count, check_positive
from .constrained import _EvalCache
from .layer_norms import conv_norm_fft, conv_norm_gram, conv_reshaped_bound


def polyphase_kernel(K: torch.Tensor, stride: int) -> torch.Tensor:
    r"""The stride-1 kernel :math:`K'` of a stride-``s`` convolution on the :math:`s^2` sub-grids of
    its input: ``K`` ``(C_out, C_in, k1, k2)`` becomes ``(C_out, C_in·s², ⌈k1/s⌉, ⌈k2/s⌉)`` with
    :math:`K'[o, (c, \alpha_1, \alpha_2), a_1, a_2] = K[o, c, s a_1 + \alpha_1, s a_2 + \alpha_2]`
    (zero beyond the kernel)."""
    check_count(stride, "stride", minimum=1)
    c_out, c_in, k1, k2 = K.shape
    a1, a2 = -(-k1 // stride), -(-k2 // stride)
    Kp = F.pad(K, (0, a2 * stride - k2, 0, a1 * stride - k1))  # (C_out, C_in, a1 s, a2 s)
    Kp = Kp.reshape(c_out, c_in, a1, stride, a2, stride).permute(0, 1, 3, 5, 2, 4)
    return Kp.reshape(c_out, c_in * stride**2, a1, a2)


def torus_size(input_size: tuple[int, int], kernel: tuple[int, int], stride: int, padding) -> int:
    r"""The side :math:`N` of step 1: the smallest multiple of the stride with
    :math:`N \ge \max(H + 2p_1, W + 2p_2)`. ``ValueError`` if the padded input is smaller than
    the kernel (the layer would have no output)."""
    p1, p2 = padding
    H, W = input_size
    if H + 2 * p1 < kernel[0] or W + 2 * p2 < kernel[1]:
        raise ValueError(
            f"input size {(H, W)} with padding {(p1, p2)} must be >= the kernel size {kernel}"
        )
    return stride * -(-max(H + 2 * p1, W + 2 * p2) // stride)


def conv_norm_upper(
    K: torch.Tensor, input_size: tuple[int, int], stride: int = 1, padding=(0, 0)
) -> float:
    r"""A guaranteed upper bound of :math:`\|A\|_2` for ``conv2d(·, K, stride, padding)`` with zero
    padding on inputs of spatial size ``input_size`` (proof in the module docstring): the minimum of
    the polyphase circular bound and the corrected reshape bound, in float64."""
    K = K.detach().double()
    N = torus_size(input_size, K.shape[-2:], stride, padding)
    circular = float(conv_norm_fft(polyphase_kernel(K, stride), N // stride))
    return min(circular, float(conv_reshaped_bound(K, stride)))


def conv_layer_geometry(layer: nn.Conv2d, in_shape, index: int):
    r"""``(stride, padding, out_shape)`` of a ``Conv2d`` on ``in_shape`` ``(C, H, W)``, after
    checking that :func:`conv_norm_upper` covers it: zero padding, square stride, no dilation, no
    groups, matching channels. A ``ValueError`` names the layer and its index otherwise."""
    name = f"layer {index} ({type(layer).__name__})"
    if in_shape is None:
        raise ValueError(
            f"{name} is not supported without input_shape=(C, H, W) of the network's input: "
            "a convolution's norm depends on its input size"
        )
    padding = (0, 0) if layer.padding == "valid" else layer.padding
    if isinstance(padding, str) or layer.padding_mode != "zeros":
        raise ValueError(f"{name}: only integer zero padding is supported, got {layer.padding!r}")
    if layer.dilation != (1, 1) or layer.groups != 1 or layer.stride[0] != layer.stride[1]:
        raise ValueError(f"{name}: dilation and groups must be 1 and the stride square")
    if in_shape[0] != layer.in_channels:
        raise ValueError(f"{name} expects {layer.in_channels} channels, gets shape {in_shape}")
    s, k = layer.stride[0], layer.kernel_size
    try:
        torus_size(in_shape[1:], k, s, padding)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    sizes = zip(in_shape[1:], padding, k, strict=True)
    out = tuple((n + 2 * p - kk) // s + 1 for n, p, kk in sizes)
    return s, tuple(padding), (layer.out_channels, *out)


class ConvSpectralNormalization(_EvalCache):
    r""":math:`K \mapsto c\, K / \sigma(K)` for a ``Conv2d`` on a known input size, so that the
    layer's operator norm is at most :math:`c`.

    Training, by ``method``: ``"power"`` — one warm-started power-iteration step per forward on the
    **real** operator (``conv2d`` and its adjoint ``conv_transpose2d``, Miyato et al., 2018's
    scheme; a lower bound, so :math:`\|A\|` can exceed :math:`c` early in training), or ``"gram"``
    — Gram iteration over the Fourier blocks of the polyphase kernel (Delattre et al., 2023;
    an upper bound, so :math:`\|A\| \le c` in training too). Evaluation: :math:`\sigma` is the
    polyphase circular norm of :func:`conv_norm_upper` (a guaranteed bound, float64), so the
    weights used at inference have :math:`\|A\|_2 \le c`. ``input_size`` is ``(H, W)``."""

    def __init__(self, c: float, input_size, stride: int, padding, method: str = "power"):
        super().__init__()
        check_positive(c, "c")
        if method not in ("power", "gram"):
            raise ValueError(f"method must be 'power' or 'gram', got {method!r}")
        self.c, self.method = float(c), method
        self.input_size, self.stride, self.padding = tuple(input_size), stride, tuple(padding)
        self._u: torch.Tensor | None = None

    def weight(self, K: torch.Tensor) -> torch.Tensor:
        s, p = self.stride, self.padding
        N = torus_size(self.input_size, K.shape[-2:], s, p)
        if not self.training:
            sigma = conv_norm_fft(polyphase_kernel(K.double(), s), N // s).to(K.dtype)
        elif self.method == "gram":
            sigma = conv_norm_gram(polyphase_kernel(K, s), N // s)
        else:
            with torch.no_grad():
                self._u = self._power_step(K.detach())
            sigma = F.conv2d(self._u, K, stride=s, padding=p).norm()  # differentiable in K
        return K * (self.c / sigma)

    def _power_step(self, K: torch.Tensor) -> torch.Tensor:
        """One step :math:`u \\leftarrow A^\\top A u / \\|\\cdot\\|` (random first ``u``)."""
        s, p = self.stride, self.padding
        if self._u is None:
            gen = torch.Generator(device=K.device).manual_seed(0)
            shape = (1, K.shape[1], *self.input_size)
            self._u = torch.randn(shape, generator=gen, device=K.device).to(K.dtype)
        v = F.conv2d(self._u, K, stride=s, padding=p)  # (1, C_out, o1, o2)
        extra = tuple(  # output_padding that restores the input size: the exact adjoint
            n - ((o - 1) * s - 2 * pp + k)
            for n, o, pp, k in zip(self.input_size, v.shape[-2:], p, K.shape[-2:], strict=True)
        )
        u = F.conv_transpose2d(v, K, stride=s, padding=p, output_padding=extra)
        return u / u.norm().clamp_min(1e-30)  # (1, C_in, H, W)
