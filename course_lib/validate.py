"""Argument checks shared by attacks, training and certification.

Every public function of ``course_lib`` rejects bad input with a ``ValueError`` that names the
argument and the accepted range; nothing is silently clamped.
"""

from __future__ import annotations

import math

import torch


def check_pixels(x: torch.Tensor, name: str = "x") -> None:
    """``x`` must be a non-empty batch of finite pixels in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty batch of shape (B, ...), got {tuple(x.shape)}"
        )
    lo, hi = x.aminmax()
    if not (torch.isfinite(lo) and torch.isfinite(hi)) or lo < 0 or hi > 1:
        raise ValueError(
            f"{name} must hold pixels in [0, 1], got values in [{lo.item():.4g}, {hi.item():.4g}]"
        )


def check_batch(x: torch.Tensor, name: str = "x") -> None:
    """``x`` must be a non-empty batch ``(B, ...)`` of finite values (any range, unlike pixels)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0 or x[0].numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty batch of shape (B, ...), got {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must hold finite values, got NaN or infinity")


def check_labels(x: torch.Tensor, y: torch.Tensor, name: str = "y") -> None:
    """``y`` must be a 1-D int64 tensor of class indices >= 0, one per sample of ``x``."""
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.dtype != torch.int64:
        raise ValueError(f"{name} must be a 1-D int64 (torch.long) tensor of class indices")
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"batch sizes differ: x has {x.shape[0]} samples but {name} has {y.shape[0]}"
        )
    if y.numel() and y.min() < 0:
        raise ValueError(f"{name} must hold class indices >= 0, got {y.min().item()}")


def check_nonnegative(value: float, name: str) -> None:
    """``value`` must be a finite number >= 0."""
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive(value: float, name: str) -> None:
    """``value`` must be a finite number > 0."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_probability(value: float, name: str) -> None:
    """``value`` must be a number strictly between 0 and 1 (a significance level, a fraction)."""
    if not _is_number(value) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in the open interval (0, 1), got {value!r}")


def check_count(value: int, name: str, minimum: int = 0) -> None:
    """``value`` must be an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_choice(value: str, name: str, choices) -> None:
    """``value`` must be one of ``choices`` (listed in the message)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
