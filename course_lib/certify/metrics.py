r"""How certified defenses are scored: certified accuracy at radius :math:`r` and the average
certified radius (ACR, Zhai et al., 2020).

A test point counts as *certified at r* when the certifier's prediction is correct **and** its
radius is at least :math:`r`; an abstention has radius 0 and is never correct.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _check_radii(radii: torch.Tensor, correct: torch.Tensor) -> None:
    if not isinstance(radii, torch.Tensor) or radii.ndim != 1 or radii.numel() == 0:
        raise ValueError("radii must be a non-empty 1-D tensor, one radius per test point")
    if not torch.isfinite(radii).all() or (radii < 0).any():
        raise ValueError("radii must be finite and >= 0 (abstentions have radius 0)")
    if not isinstance(correct, torch.Tensor) or correct.dtype != torch.bool:
        raise ValueError("correct must be a bool tensor: prediction == label, False on abstain")
    if correct.shape != radii.shape:
        raise ValueError(
            f"correct and radii must have the same shape, got {tuple(correct.shape)} "
            f"and {tuple(radii.shape)}"
        )


def certified_accuracy(
    radii: torch.Tensor, correct: torch.Tensor, r_grid: Sequence[float]
) -> torch.Tensor:
    r"""Certified accuracy at each radius of ``r_grid``: :math:`\frac1N \sum_i
    \mathbb 1[\hat y_i = y_i \wedge R_i \ge r]`, a tensor ``(len(r_grid),)``; non-increasing in
    :math:`r`, and at :math:`r = 0` the accuracy of the certifier's predictions."""
    _check_radii(radii, correct)
    r = torch.as_tensor(list(r_grid), dtype=radii.dtype, device=radii.device)  # (R,)
    if r.ndim != 1 or (r < 0).any():
        raise ValueError("r_grid must be a 1-D sequence of radii >= 0")
    certified = (radii[None, :] >= r[:, None]) & correct[None, :]  # (R, N)
    return certified.float().mean(1)


def average_certified_radius(radii: torch.Tensor, correct: torch.Tensor) -> float:
    r"""ACR :math:`= \frac1N \sum_i R_i\, \mathbb 1[\hat y_i = y_i]`: the area under the
    certified-accuracy curve, so one number summarises the whole curve."""
    _check_radii(radii, correct)
    return float((radii * correct).mean())
