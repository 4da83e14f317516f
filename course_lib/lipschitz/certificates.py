r"""Certified radii from Lipschitz bounds (Tsuzuku et al., 2018, "Lipschitz-margin training").

If every logit difference :math:`f_j - f_i` changes by less than the margin inside a ball, the
prediction cannot change there. The three radii below differ only in which Lipschitz bound they
read: one constant for the whole logit map, one per logit, or one per pair of logits. Each is
computed from the logits of one forward pass. Introduced in chapter 1.
"""

from __future__ import annotations

import math

import torch

from ..validate import check_batch


def margin_radius(logits: torch.Tensor, L: float) -> torch.Tensor:
    r"""Certified :math:`\ell_2` radius :math:`r = (f_j - \max_{i \ne j} f_i) / (\sqrt 2\, L)` of
    the predicted class :math:`j`, for a logit map that is :math:`L`-Lipschitz as a whole.

    Why :math:`\sqrt 2`: :math:`f_j - f_i = (e_j - e_i)^\top f` and :math:`\|e_j - e_i\| = \sqrt 2`,
    so a perturbation :math:`\delta` changes every difference by at most
    :math:`\sqrt 2 L \|\delta\|`, which is smaller than the margin for :math:`\|\delta\| < r`.
    ``logits`` ``(B, K)``; returns ``(B,)``. A tie (margin 0) gives radius 0: not certified.
    """
    check_logits(logits)
    if isinstance(L, torch.Tensor) and L.numel() == 1:
        L = float(L)
    if isinstance(L, bool) or not isinstance(L, int | float) or not math.isfinite(L) or L <= 0:
        raise ValueError(f"L must be a finite number > 0 (a Lipschitz bound), got {L!r}")
    top2 = logits.detach().double().topk(2, dim=1).values  # (B, 2)
    return ((top2[:, 0] - top2[:, 1]) / (math.sqrt(2) * L)).to(logits.dtype)  # (B,)


def margin_radius_per_logit(logits: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    r"""Certified radius :math:`\min_{i \ne j} (f_j - f_i) / (L^j + L^i)` when logit :math:`i` is
    :math:`L^i`-Lipschitz (``L`` of shape ``(K,)``). With all :math:`L^i = L` it is
    :math:`\text{margin} / (2L)` (deel-lip's "disjoint neurons" certificate)."""
    check_logits(logits)
    _check_bounds(L, (logits.shape[1],), "L")
    pairwise = L.double().view(-1, 1) + L.double().view(1, -1)  # (K, K)
    return _pairwise_radius(logits, pairwise)


def margin_radius_pairwise(logits: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    r"""Certified radius :math:`\min_{i \ne j} (f_j - f_i) / L^{ji}` with ``L`` ``(K, K)`` bounds
    of every logit difference (:func:`lipschitz_upper_bound_pairwise`). Never smaller than the
    global and the per-logit radii computed from the same weights (Leino et al., 2021)."""
    check_logits(logits)
    _check_bounds(L, (logits.shape[1],) * 2, "L")
    return _pairwise_radius(logits, L.double())


def check_logits(logits: torch.Tensor) -> None:
    """``logits`` must be a non-empty, finite ``(B, K)`` batch with ``K >= 2`` classes."""
    check_batch(logits, "logits")
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (B, K) with K >= 2, got {tuple(logits.shape)}")


def _pairwise_radius(logits: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    f = logits.detach().double()  # (B, K)
    j = f.argmax(1)  # (B,) predicted class
    gaps = f.gather(1, j[:, None]) - f  # (B, K): f_j - f_i
    radii = gaps / L.to(f.device)[j]  # (B, K)
    radii[torch.arange(f.shape[0]), j] = math.inf  # i = j is not a competitor
    return radii.amin(1).to(logits.dtype)  # (B,)


def _check_bounds(L: torch.Tensor, shape: tuple, name: str) -> None:
    if not isinstance(L, torch.Tensor) or tuple(L.shape) != shape:
        raise ValueError(f"{name} must be a tensor of shape {shape}, got {getattr(L, 'shape', L)}")
    off_diagonal = L if L.ndim == 1 else L[~torch.eye(shape[0], dtype=torch.bool)]
    if not torch.isfinite(L).all() or (off_diagonal <= 0).any():
        raise ValueError(f"{name} must hold finite Lipschitz bounds > 0 (off the diagonal)")
