r"""Pixel deflection and wavelet denoising (Prakash, Moran, Garber, DiLillo & Storer, 2018).

**Pixel deflection** replaces ``deflections`` randomly chosen pixels of each channel by a pixel
drawn uniformly from a ``window``-neighbourhood around them; an optional class-activation map
:math:`r \in [0, 1]^{H \times W}` protects the pixels that matter (a target is skipped with
probability :math:`r_{ij}`, and skips do not use the budget, so targets are drawn with probability
proportional to :math:`1 - r_{ij}`). **Wavelet denoising** then soft-thresholds the detail
coefficients of an orthonormal Haar transform with the BayesShrink threshold of Chang, Yu &
Vetterli (2000), per detail band :math:`D`:

.. math::  t_D = \frac{\sigma^2}{\sqrt{\max(\overline{D^2} - \sigma^2,\ \epsilon)}},\qquad
           \hat D = \mathrm{sign}(D)\max(|D| - t_D, 0),

which is ``skimage.restoration.denoise_wavelet(img, sigma, wavelet="haar", mode="soft",
method="BayesShrink")`` on a grayscale float image (a unit test checks it), batched in PyTorch.

Deviations from the reference (``iamaaditya/pixel-deflection``, ``methods.pixel_deflection``):
all deflections of an image are drawn at once and read the *original* image (the reference loops
and may copy an already deflected pixel); offsets are uniform in ``[-window, window]`` (as the
reference's inclusive ``random.randint(-window, window)``) but clipped to the image, where the
reference resamples them until the source lies strictly inside (``x + a > 0``, so row and column 0
are never sources); ``deflections`` is a budget *per channel*, where the reference's budget counts
deflections across channels (each channel draws its own target and decrements the same counter,
so an RGB image gets about a third of the budget per channel; identical for grayscale digits);
colour images are denoised per channel instead of in YCbCr; Haar instead of the reference's
default wavelet (db1 *is* Haar in scikit-image, so only the name differs).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..validate import check_count, check_nonnegative, check_pixels
from .defended import shattered


def pixel_deflection(
    x: torch.Tensor,
    deflections: int,
    window: int,
    cam: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Deflect ``deflections`` pixels per image and channel of ``x`` (B, C, H, W); ``cam``
    (B, H, W) in [0, 1] is the optional class-activation map (1 = never deflected)."""
    check_pixels(x, "x")
    check_count(deflections, "deflections", minimum=0)
    check_count(window, "window", minimum=1)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got {tuple(x.shape)}")
    B, C, H, W = x.shape
    planes = x.reshape(B * C, H * W)  # one row per channel of each image
    weights = torch.ones_like(planes)
    if cam is not None:
        if cam.shape != (B, H, W):
            raise ValueError(f"cam must have shape (B, H, W) = {(B, H, W)}, got {tuple(cam.shape)}")
        check_pixels(cam, "cam")
        weights = (1 - cam).reshape(B, 1, H * W).expand(B, C, H * W).reshape(B * C, H * W)
    alive = weights.sum(1) > 0  # a map of ones everywhere leaves the image untouched
    if deflections == 0 or not alive.any():
        return x.clone()
    weights = torch.where(alive[:, None], weights, torch.ones_like(weights))
    target = torch.multinomial(weights, deflections, replacement=True, generator=generator)
    r, c = target // W, target % W  # (P, D) rows and columns of the targets

    def source(centre: torch.Tensor, size: int) -> torch.Tensor:
        lo = (centre - window).clamp(min=0)
        hi = (centre + window).clamp(max=size - 1)
        u = torch.rand(centre.shape, generator=generator, device=x.device)
        return lo + (u * (hi - lo + 1)).long().clamp(max=hi - lo)  # uniform in [lo, hi]

    src = source(r, H) * W + source(c, W)  # (P, D) flat index of the copied pixel
    out = planes.clone()
    new = planes.gather(1, src)  # (P, D)
    out.scatter_(1, target, torch.where(alive[:, None], new, planes.gather(1, target)))
    return out.reshape(B, C, H, W)


def _haar_step(a: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One level of the orthonormal 2-D Haar transform: approximation and three detail bands,
    each (N, H/2, W/2)."""
    p, q = a[:, 0::2, 0::2], a[:, 0::2, 1::2]
    r, s = a[:, 1::2, 0::2], a[:, 1::2, 1::2]
    return (p + q + r + s) / 2, ((p - q + r - s) / 2, (p + q - r - s) / 2, (p - q - r + s) / 2)


def _haar_inverse(approx: torch.Tensor, details: tuple[torch.Tensor, ...]) -> torch.Tensor:
    h, v, d = details
    N, h2, w2 = approx.shape
    out = approx.new_empty(N, 2 * h2, 2 * w2)
    out[:, 0::2, 0::2] = (approx + h + v + d) / 2
    out[:, 0::2, 1::2] = (approx - h + v - d) / 2
    out[:, 1::2, 0::2] = (approx + h - v - d) / 2
    out[:, 1::2, 1::2] = (approx - h - v + d) / 2
    return out


def bayes_shrink_threshold(details: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""BayesShrink threshold of each band (N, h, w) -> (N,): :math:`\sigma^2 /
    \sqrt{\max(\mathrm{mean}(D^2) - \sigma^2, \epsilon)}`."""
    check_nonnegative(sigma, "sigma")
    eps = torch.finfo(details.dtype).eps
    var_d = details.pow(2).flatten(1).mean(1)  # (N,)
    return sigma**2 / torch.sqrt(torch.clamp(var_d - sigma**2, min=eps))


def wavelet_denoise(x: torch.Tensor, sigma: float, levels: int | None = None) -> torch.Tensor:
    """BayesShrink soft thresholding of Haar detail coefficients, per image and channel.

    ``levels`` defaults to scikit-image's choice, ``max(floor(log2(min(H, W))) - 3, 1)`` (1 for
    MNIST); ``H`` and ``W`` must be divisible by ``2**levels``. The approximation band is kept."""
    check_pixels(x, "x")
    check_nonnegative(sigma, "sigma")
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got {tuple(x.shape)}")
    B, C, H, W = x.shape
    levels = max(int(math.log2(min(H, W))) - 3, 1) if levels is None else levels
    check_count(levels, "levels", minimum=1)
    if H % 2**levels or W % 2**levels:
        raise ValueError(f"levels must leave H, W = {H}, {W} divisible by 2**levels, got {levels}")
    approx, bands = x.reshape(B * C, H, W), []
    for _ in range(levels):
        approx, details = _haar_step(approx)
        bands.append(details)
    for details in reversed(bands):
        shrunk = []
        for band in details:
            t = bayes_shrink_threshold(band, sigma).view(-1, 1, 1)  # (N, 1, 1)
            shrunk.append(band.sign() * torch.clamp(band.abs() - t, min=0))
        approx = _haar_inverse(approx, tuple(shrunk))
    return approx.reshape(B, C, H, W)


class PixelDeflection(nn.Module):
    """The full defense: :func:`pixel_deflection`, then :func:`wavelet_denoise` (reference
    defaults: 200 deflections, window 10, sigma 0.04, on 224-pixel images; choose fewer
    deflections for 28-pixel digits). A fresh draw on every call; the output is clipped to
    [0, 1] (thresholding can overshoot slightly). A black box to autograd, like the numpy/pywt
    reference (see :func:`~course_lib.defenses.shattered`)."""

    def __init__(
        self,
        deflections: int = 200,
        window: int = 10,
        sigma: float = 0.04,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        check_count(deflections, "deflections", minimum=0)
        check_count(window, "window", minimum=1)
        check_nonnegative(sigma, "sigma")
        self.deflections, self.window, self.sigma = deflections, window, sigma
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x_d = pixel_deflection(x.detach(), self.deflections, self.window, None, self.generator)
            x_t = wavelet_denoise(x_d, self.sigma).clamp(0, 1)
        return shattered(x, x_t)

    def extra_repr(self) -> str:
        return f"deflections={self.deflections}, window={self.window}, sigma={self.sigma}"
