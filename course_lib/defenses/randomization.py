r"""Randomization: random resizing and padding (Xie, Wang, Zhang, Ren & Yuille, 2018), and random
pixel masking.

Each image is resized to a random side :math:`r \sim U\{\text{size}, \dots, \text{max\_size}-1\}`
with nearest-neighbour interpolation, then placed at a random offset
:math:`(t, l) \sim U\{0, \dots, \text{max\_size} - r\}^2` on a zero canvas of side ``max_size``:
:math:`(\text{max\_size} - r + 1)^2` padding patterns per size. A new draw on every call.

Which version: the paper, the README and the NIPS-2017 submission disagree (methods-empirical.md
§A.3). We follow the **submission code** (nearest-neighbour resize, zero padding, ``Rnd`` in
``[size, max_size)`` as in the README's ``[310, 331)``) **without** its random horizontal flip and
without its 30-draw ensemble: one draw per call, and :func:`course_lib.adaptive.eot` does the
averaging for the attacker (and for the defender, if wanted). Athalye et al. attack a variant with
bilinear resizing and 0.5 padding; the lesson does not depend on it.

Every operation is a gather of pixels, so autograd passes exact gradients *of the drawn
transform*; what makes a naive attack weak is that the next call draws another one.

:class:`RandomPixelMask` zeroes each pixel with probability ``drop_prob`` (the lecture's "randomly
mask out some pixels"); :class:`~course_lib.defenses.tv.TVMinimization` is the variant that then
completes the image.
"""

from __future__ import annotations

import torch
from torch import nn

from ..validate import check_count, check_pixels
from .tv import pixel_dropout_mask


def random_resize_pad(
    x: torch.Tensor, size: int, max_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resize each image of ``x`` (B, C, H, W) to a random side in ``[size, max_size)`` and pad it
    to ``max_size`` at a random offset. Returns the images (B, C, max_size, max_size), the sides
    (B,) and the offsets (B, 2) (top, left)."""
    check_pixels(x, "x")
    check_count(size, "size", minimum=1)
    check_count(max_size, "max_size", minimum=1)
    if max_size <= size:
        raise ValueError(f"max_size must be > size = {size}, got {max_size}")
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got {tuple(x.shape)}")
    B, _, H, W = x.shape
    dev = x.device
    u = torch.rand(B, 3, generator=generator, device=dev)
    side = size + (u[:, 0] * (max_size - size)).long().clamp(max=max_size - size - 1)  # (B,)
    room = max_size - side + 1  # offsets 0 .. max_size - side
    top = (u[:, 1] * room).long().clamp(max=room - 1)  # (B,)
    left = (u[:, 2] * room).long().clamp(max=room - 1)
    i = torch.arange(max_size, device=dev)

    def source(offset: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        rel = i[None, :] - offset[:, None]  # (B, S) position inside the resized image
        inside = (rel >= 0) & (rel < side[:, None])
        scale = (length / side.float())[:, None]  # nearest neighbour, as F.interpolate does
        src = (rel.clamp(min=0).float() * scale).floor().long().clamp(max=length - 1)
        return src, inside

    rows, in_r = source(top, H)
    cols, in_c = source(left, W)
    b = torch.arange(B, device=dev)[:, None, None]
    out = x[b, :, rows[:, :, None], cols[:, None, :]]  # (B, S, S, C)
    keep = (in_r[:, :, None] & in_c[:, None, :]).unsqueeze(-1)  # (B, S, S, 1)
    out = torch.where(keep, out, torch.zeros_like(out)).permute(0, 3, 1, 2)
    return out.contiguous(), side, torch.stack([top, left], 1)


class RandomResizePad(nn.Module):
    """:func:`random_resize_pad` as a transform (a fresh draw on every call)."""

    def __init__(self, size: int, max_size: int, generator: torch.Generator | None = None):
        super().__init__()
        check_count(size, "size", minimum=1)
        check_count(max_size, "max_size", minimum=1)
        if max_size <= size:
            raise ValueError(f"max_size must be > size = {size}, got {max_size}")
        self.size, self.max_size, self.generator = size, max_size, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return random_resize_pad(x, self.size, self.max_size, self.generator)[0]

    def extra_repr(self) -> str:
        return f"size={self.size}, max_size={self.max_size}"


class RandomPixelMask(nn.Module):
    """Zero each pixel independently with probability ``drop_prob`` (a fresh mask per call)."""

    def __init__(self, drop_prob: float, generator: torch.Generator | None = None):
        super().__init__()
        pixel_dropout_mask(torch.zeros(1, 1), drop_prob)  # validates drop_prob
        self.drop_prob, self.generator = drop_prob, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * pixel_dropout_mask(x, self.drop_prob, self.generator)
