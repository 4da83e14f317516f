"""Argument checks shared by attacks, training and certification.

Every public function of ``course_lib`` rejects bad input with a ``ValueError`` that names the
argument and the accepted range; nothing is silently clamped. A public function that takes a model
calls :func:`check_fits` once at its entry (one forward pass of one sample), so that labels beyond
the model's logits or inputs of the wrong shape never reach ``F.cross_entropy`` or a convolution
(a bare ``IndexError``, a conv ``RuntimeError``, a CUDA device-side assert). Helpers that run on
every step of a loop use only the cheap checks (:func:`check_tensor`, :func:`check_channels`).
``tests/test_bad_input.py`` feeds every public function its typical mistakes.
"""

from __future__ import annotations

import functools
import math
import numbers

import torch
from torch import nn


def check_pixels(x: torch.Tensor, name: str = "x") -> None:
    """``x`` must be a non-empty batch of finite float pixels in [0, 1]."""
    check_tensor(x, name, min_ndim=2)
    lo, hi = x.aminmax()
    if not (torch.isfinite(lo) and torch.isfinite(hi)) or lo < 0 or hi > 1:
        raise ValueError(
            f"{name} must hold pixels in [0, 1], got values in [{lo.item():.4g}, {hi.item():.4g}]"
        )


def check_batch(x: torch.Tensor, name: str = "x") -> None:
    """``x`` must be a non-empty batch ``(B, ...)`` of finite values (any range, unlike pixels)."""
    check_tensor(x, name, min_ndim=2)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must hold finite values, got NaN or infinity")


def check_tensor(
    x: torch.Tensor, name: str = "x", like: torch.Tensor | None = None, min_ndim: int = 1
) -> None:
    """Cheap checks (no pass over the data), enough for inner-loop helpers: ``x`` is a non-empty
    float tensor with at least ``min_ndim`` dimensions, of the shape of ``like`` if given."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    _check_float(x, name)
    if x.ndim < min_ndim or x.shape[0] == 0 or x[0].numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty batch of shape (B, ...), got {tuple(x.shape)}"
        )
    if like is not None and x.shape != like.shape:
        raise ValueError(f"{name} must have the shape {tuple(like.shape)}, got {tuple(x.shape)}")


def check_radius(eps, name: str = "eps") -> None:
    """``eps`` is a finite number >= 0, or a tensor of them (one per sample, broadcastable)."""
    if isinstance(eps, torch.Tensor):
        if not eps.is_floating_point() or not torch.isfinite(eps).all() or (eps < 0).any():
            raise ValueError(f"{name} must hold finite float radii >= 0")
    else:
        check_nonnegative(eps, name)


def check_labels(
    x: torch.Tensor, y: torch.Tensor, name: str = "y", num_classes: int | None = None
) -> None:
    """``y`` must be a 1-D int64 tensor of class indices in ``[0, num_classes)`` (``>= 0`` when
    ``num_classes`` is None), one per sample of ``x``."""
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.dtype != torch.int64:
        got = f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y)
        raise ValueError(
            f"{name} must be a 1-D int64 (torch.long) tensor of class indices, got {got} "
            f"(convert with {name}.long())"
        )
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"batch sizes differ: x has {x.shape[0]} samples but {name} has {y.shape[0]}"
        )
    if not y.numel():
        return
    lo, hi = (v.item() for v in y.aminmax())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        accepted = (
            ">= 0" if num_classes is None else f"in [0, {num_classes - 1}] ({num_classes} classes)"
        )
        raise ValueError(f"{name} must hold class indices {accepted}, got {lo if lo < 0 else hi}")


def check_fits(
    model, x: torch.Tensor, y: torch.Tensor | None = None, name: str = "x", y_name: str = "y"
) -> int:
    """``x`` must fit ``model`` and ``y`` (if given) must be labels of its logits.

    Runs the model once on the first sample of ``x`` under ``torch.no_grad()`` in eval mode (so
    that BatchNorm statistics are untouched; every submodule gets its own mode back at once) and
    with the random state restored afterwards (a noisy model leaves the caller's draws alone), and
    turns a shape error into a ``ValueError`` that names ``name``. Returns the number of logits
    ``K``. Call it once at the entry of a public function, never inside a per-step loop.
    """
    check_channels(model, x, name)
    modes = [(m, m.training) for m in model.modules()] if isinstance(model, nn.Module) else []
    for m, _ in modes:
        m.training = False
    cuda = [x.device.index or 0] if x.device.type == "cuda" else []
    try:  # a randomised model (noise inside) draws the same numbers as without this probe
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            out = model(x[:1])
    except (RuntimeError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} does not fit the model: {first}"
        ) from err
    finally:
        for m, mode in modes:
            m.training = mode
    if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != 1:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} does not fit the model: one sample "
            f"{tuple(x[:1].shape)} gave an output of shape {got} instead of (1, K); "
            "is the batch dimension missing?"
        )
    num_logits = out[0].numel()
    if y is not None:
        check_labels(x, y, y_name, num_classes=num_logits)
    return num_logits


def checked_by(check):
    """Decorator: call ``check(*args, **kwargs)`` (which raises on bad input) before the function.

    The unchecked function stays reachable as ``fn.__wrapped__``, for inner loops whose caller
    checked the arguments once, and ``inspect.getsource`` (``show_source``) still shows its code.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            check(*args, **kwargs)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def check_channels(model, x: torch.Tensor, name: str = "x") -> None:
    """Cheap part of :func:`check_fits` (no forward pass): for an image model (one whose first
    layer is a ``Normalize`` or a convolution) ``x`` must be a batch ``(B, C, H, W)`` with the
    model's channel count ``C``."""
    expected = expected_channels(model)
    if expected is not None and x.ndim != 4:
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} does not fit the model: it takes a batch "
            f"(B, {expected}, H, W); for one image use {name}[None]"
        )
    if expected is not None and x.ndim == 4 and x.shape[1] != expected:
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} does not fit the model: it takes {expected} "
            f"channel(s), (B, {expected}, H, W)"
        )


def expected_channels(model) -> int | None:
    """The number of input channels of ``model``'s first ``Normalize`` or convolution, if any."""
    if not isinstance(model, nn.Module):
        return None
    for m in model.modules():
        mean = getattr(m, "mean", None)
        if isinstance(mean, torch.Tensor) and mean.ndim == 4:  # models.Normalize
            return mean.shape[1]
        if isinstance(m, nn.Conv2d):
            return m.in_channels
        if isinstance(m, nn.Linear):
            return None
    return None


def _check_float(x: torch.Tensor, name: str) -> None:
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor (pixels in [0, 1]), got dtype {x.dtype}; "
            f"convert integer images with {name}.float() / 255"
        )


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
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_choice(value: str, name: str, choices) -> None:
    """``value`` must be one of ``choices`` (listed in the message)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
