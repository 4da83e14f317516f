r"""Randomized diversification (Taran, Rezaeifar, Holotyak & Voloshynovskiy, CVPR 2019).

A secret key :math:`k \in \{-1, +1\}^{H \times W}` flips the signs of the 2-D DCT coefficients of
the image in one sub-band, and a classifier is trained on the keyed images:

.. math::  t_k(x) = C^\top \big((C x C^\top) \odot k\big) C,

with :math:`C` the orthonormal DCT-II matrix. The key is :math:`\mathrm{sign}(\mathcal N(0, 1))`
inside the chosen quadrant of the DCT plane and +1 elsewhere, so the low-frequency quadrant
(where most of the image lives) is never flipped. :math:`K` classifiers with independent keys form
an ensemble aggregated by the sum of their softmax outputs. The defense rests on the keys being
secret; the attacker is assumed to know everything else.

Quadrants (rows = vertical frequency, columns = horizontal): ``"d"`` high-high (bottom-right),
``"h"`` low rows / high columns, ``"v"`` high rows / low columns.

Deviations from the reference (``taranO/defending-adversarial-attacks-by-RD``): orthonormal DCT
(``norm="ortho"``) instead of scipy's unnormalised one, hence no per-channel L2 renormalisation
afterwards (an orthonormal transform with sign flips already preserves the norm); one key per
classifier for any sub-band, as in the reference, but :math:`K` is a parameter (the reference trains
3 sub-bands x 5 keys = 15 classifiers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..validate import check_choice, check_count, check_pixels

SUBBANDS = ("d", "h", "v")


def dct_matrix(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""The orthonormal DCT-II matrix :math:`C_{ki} = \alpha_k \cos\frac{\pi (2i+1) k}{2n}`,
    :math:`\alpha_0 = \sqrt{1/n}`, :math:`\alpha_k = \sqrt{2/n}`; :math:`C C^\top = I`."""
    check_count(n, "n", minimum=1)
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    c[0] /= math.sqrt(2)
    return c.to(dtype)  # (n, n)


def _check_square(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must end in two equal dimensions (..., n, n), got {shape}")


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT over the last two dimensions (square images)."""
    _check_square(x, "x")
    c = dct_matrix(x.shape[-1], x.dtype).to(x.device)
    return c @ x @ c.T


def idct2(coeffs: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct2`."""
    _check_square(coeffs, "coeffs")
    c = dct_matrix(coeffs.shape[-1], coeffs.dtype).to(coeffs.device)
    return c.T @ coeffs @ c


def subband_mask(size: int, subband: str) -> torch.Tensor:
    """Boolean (size, size) mask of one quadrant of the DCT plane (see the module text)."""
    check_count(size, "size", minimum=2)
    check_choice(subband, "subband", SUBBANDS)
    half = size // 2
    high = torch.arange(size) >= half
    rows, cols = {"d": (high, high), "h": (~high, high), "v": (high, ~high)}[subband]
    return rows[:, None] & cols[None, :]


def make_key(size: int, subband: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A secret key: random signs inside ``subband``, +1 elsewhere, shape (size, size)."""
    check_choice(subband, "subband", SUBBANDS)
    check_count(size, "size", minimum=2)
    signs = torch.randn(size, size, generator=generator).sign()
    signs[signs == 0] = 1
    return torch.where(subband_mask(size, subband), signs, torch.ones_like(signs))


def keyed_transform(x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """:math:`t_k(x)`: flip the signs of the DCT coefficients where ``key`` is -1."""
    check_pixels(x, "x")
    if x.ndim != 4 or x.shape[-2:] != key.shape or x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"x must be square images (B, C, n, n) matching key {tuple(key.shape)}, "
            f"got {tuple(x.shape)}"
        )
    return idct2(dct2(x) * key.to(x.device, x.dtype))


class KeyedClassifier(nn.Module):
    """``classifier(keyed_transform(x, key))`` with the key stored as a buffer."""

    def __init__(self, classifier: nn.Module, key: torch.Tensor):
        super().__init__()
        self.classifier = classifier
        self.register_buffer("key", key.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(keyed_transform(x, self.key))  # (B, K)


class DiversifiedEnsemble(nn.Module):
    r"""The :math:`K` keyed classifiers, aggregated by the sum of their softmax outputs; returns
    :math:`\log\frac1K\sum_j \mathrm{softmax}(f_j(t_{k_j}(x)))` (same argmax as the sum)."""

    def __init__(self, members: list[KeyedClassifier]):
        super().__init__()
        if not members:
            raise ValueError("members must be a non-empty list of keyed classifiers")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_p = torch.stack([F.log_softmax(m(x), dim=1) for m in self.members])  # (K, B, C)
        return torch.logsumexp(log_p, dim=0) - math.log(len(self.members))


class RandomMember(nn.Module):
    r"""The lecture's "suite of classifiers, so the attacker cannot know the one that is used":
    every query (every image of the batch) is answered by its own member of ``ensemble``, drawn
    uniformly and independently, :math:`j_b \sim U\{1, \dots, K\}`, so a batch of :math:`B`
    images is :math:`B` independent queries (and :func:`course_lib.adaptive.eot` may batch its
    draws). Vectorised over the batch: each member runs once, on the rows that drew it (the same
    logits as stacking all members, ``(K, B, C)``, and picking row ``b`` of member ``j_b``, at
    :math:`1/K` of the cost)."""

    def __init__(self, ensemble: DiversifiedEnsemble, generator: torch.Generator | None = None):
        super().__init__()
        self.ensemble, self.generator = ensemble, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self.ensemble.members
        dev = x.device if self.generator is None else self.generator.device
        j = torch.randint(len(members), (x.shape[0],), generator=self.generator, device=dev)
        j = j.to(x.device)  # (B,) the member answering each query
        rows = [torch.nonzero(j == k).squeeze(1) for k in range(len(members))]
        used = [(m, r) for m, r in zip(members, rows, strict=True) if r.numel()]  # drawn members
        logits = torch.cat([m(x[r]) for m, r in used])  # (B, C), grouped by member
        order = torch.cat([r for _, r in used]).argsort()  # back to the order of the batch
        return logits[order]  # (B, C)
