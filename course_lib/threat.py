r"""Threat models: the set of perturbations an attacker may use, and how to climb inside it.

An :math:`\ell_p` threat model around a clean input :math:`x` is the ball

.. math::  B_p(x, \varepsilon) = \{x' : \|x' - x\|_p \le \varepsilon,\ x' \in [0, 1]^d\}.

Every attack in :mod:`course_lib.attacks` needs three operations on it, collected per norm in
:data:`THREATS`:

* ``project(x_adv, x, eps)``: map ``x_adv`` back into the ball (and into [0, 1]);
* ``step(grad, alpha)``: the steepest-ascent direction of length ``alpha`` for that norm,
  :math:`\arg\max_{\|v\|_p \le \alpha} g^\top v` (the sign for :math:`\ell_\infty`, the normalised
  gradient for :math:`\ell_2`);
* ``random_start(x, eps)``: a random point of the ball, to start PGD from.

Shapes: ``x`` is ``(B, ...)``; norms are taken per sample over all other dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .validate import check_radius, check_tensor

_TINY = 1e-12  # guards divisions by a zero norm


def _per_sample_l2(v: torch.Tensor) -> torch.Tensor:
    r""":math:`\|v_i\|_2` for every sample, shaped ``(B, 1, ..., 1)`` to broadcast against ``v``."""
    norms = v.flatten(1).norm(p=2, dim=1)  # (B,)
    return norms.view(-1, *([1] * (v.ndim - 1)))


# ----- l_inf ---------------------------------------------------------------------------------


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    r"""Clip :math:`\delta = x_{adv} - x` to :math:`[-\varepsilon, \varepsilon]`, then
    :math:`x + \delta` to [0, 1]. Both are exact Euclidean projections (boxes), and their
    composition is the exact projection onto the intersection because both are coordinate-wise."""
    check_tensor(x, "x")
    check_tensor(x_adv, "x_adv", like=x)
    check_radius(eps)
    delta = torch.clamp(x_adv - x, min=-eps, max=eps)
    return torch.clamp(x + delta, min=0, max=1)


def step_linf(grad: torch.Tensor, alpha: float) -> torch.Tensor:
    r""":math:`\arg\max_{\|v\|_\infty \le \alpha} g^\top v = \alpha\,\mathrm{sign}(g)`."""
    check_tensor(grad, "grad")
    return alpha * grad.sign()


def random_start_linf(x: torch.Tensor, eps: float) -> torch.Tensor:
    r"""Uniform noise :math:`U(-\varepsilon, \varepsilon)^d` added to ``x``, clipped to [0, 1]
    (Madry et al., 2018)."""
    check_tensor(x, "x")
    check_radius(eps)
    return torch.clamp(x + torch.empty_like(x).uniform_(-eps, eps), min=0, max=1)


# ----- l_2 -----------------------------------------------------------------------------------


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    r"""Scale :math:`\delta` back onto the sphere if :math:`\|\delta\|_2 > \varepsilon`:
    :math:`\delta \cdot \min(1, \varepsilon / \|\delta\|_2)` (the exact projection onto the ball),
    then clip :math:`x + \delta` to [0, 1]. The clip moves every coordinate towards :math:`x`, so
    the result stays in the ball (feasible, though not the exact projection onto ball ∩ box)."""
    check_tensor(x, "x")
    check_tensor(x_adv, "x_adv", like=x)
    check_radius(eps)
    delta = x_adv - x
    factor = torch.clamp(eps / (_per_sample_l2(delta) + _TINY), max=1.0)  # (B, 1, ..., 1)
    return torch.clamp(x + delta * factor, min=0, max=1)


def step_l2(grad: torch.Tensor, alpha: float) -> torch.Tensor:
    r""":math:`\arg\max_{\|v\|_2 \le \alpha} g^\top v = \alpha\, g / \|g\|_2` (per sample)."""
    check_tensor(grad, "grad")
    return alpha * grad / (_per_sample_l2(grad) + _TINY)


def random_start_l2(x: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    r"""A point drawn uniformly from the :math:`\ell_2` ball: a Gaussian direction scaled to radius
    :math:`\varepsilon\, u^{1/d}` with :math:`u \sim U(0, 1)`, then clipped to [0, 1]. ``eps`` is
    one radius or one per sample, shaped ``(B, 1, ..., 1)``."""
    check_tensor(x, "x")
    check_radius(eps)
    direction = torch.randn_like(x)
    direction = direction / (_per_sample_l2(direction) + _TINY)
    d = x[0].numel()
    u = torch.rand(x.shape[0], device=x.device, dtype=x.dtype) ** (1.0 / d)  # (B,)
    return torch.clamp(x + direction * eps * u.view(-1, *([1] * (x.ndim - 1))), min=0, max=1)


# ----- the table the attacks read ------------------------------------------------------------


@dataclass(frozen=True)
class Threat:
    """The three operations of one norm ball (see the module docstring)."""

    project: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    step: Callable[[torch.Tensor, float], torch.Tensor]
    random_start: Callable[[torch.Tensor, float], torch.Tensor]


THREATS: dict[str, Threat] = {
    "linf": Threat(project_linf, step_linf, random_start_linf),
    "l2": Threat(project_l2, step_l2, random_start_l2),
}


def perturbation_norm(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    r"""The size :math:`\|x_{adv} - x\|_p` of each sample's perturbation, shape ``(B,)``."""
    check_tensor(x, "x")
    check_tensor(x_adv, "x_adv", like=x)
    if norm not in THREATS:
        raise ValueError(f"norm must be one of {sorted(THREATS)}, got {norm!r}")
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(dim=1) if norm == "linf" else delta.norm(p=2, dim=1)
