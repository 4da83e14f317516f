r"""Certified top-k robustness (Leino & Fredrikson, 2021, "Relaxing Local Robustness", NeurIPS;
reference ``RtkGloroNet`` in klasleino/gloro, ``relaxations/models.py``).

Some inputs are genuinely ambiguous (a 4 that could be a 9): no classifier can be robust on them
at top-1, but the **set** of its top :math:`k` classes can be. With the top-:math:`k` set
:math:`T_k(x)` of the logits :math:`y = f(x)` and GloRo's pairwise bounds
:math:`K_{ji} \ge \mathrm{Lip}(y_j - y_i)` (:mod:`course_lib.certify.gloro`), the set cannot change
inside :math:`\|\delta\|_2 \le \varepsilon` when the top-:math:`k` margin is positive:

.. math::  m_k(x) = \min_{j \in T_k} \Big[ y_j
           - \max_{i \notin T_k} \big(y_i + \varepsilon K_{ji}\big) \Big] > 0 ,

equivalently when :math:`\varepsilon` is below the top-:math:`k` radius
:math:`r_k(x) = \min_{j \in T_k,\, i \notin T_k} (y_j - y_i)/K_{ji}`: no logit outside the set
can overtake one inside it. The relaxed model answers with the smallest :math:`k \le k_{max}` whose
set is certified (the least relaxation that is robust), or ⊥ if none is.

Deviations from the reference: a tie between rank :math:`k` and rank :math:`k+1` is never
certified (radius 0, like :mod:`.gloro`); only inference is implemented here (the reference also
trains with the relaxed ⊥ logit); the bounds ``K`` are whatever the caller passes (the exact
frozen ones of :meth:`GloroNet.frozen_lipschitz` for a sound certificate).
"""

from __future__ import annotations

import torch
from torch import nn

from ..validate import check_count
from .gloro import _check


def top_k_sets(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean ``(B, C)`` membership of the ``k`` largest logits (ties broken by ``topk``)."""
    _check_k(logits, k)
    idx = logits.topk(k, dim=1).indices  # (B, k)
    return torch.zeros_like(logits, dtype=torch.bool).scatter(1, idx, True)


def topk_radius(logits: torch.Tensor, K: torch.Tensor, k: int) -> torch.Tensor:
    r""":math:`r_k = \min_{j \in T_k, i \notin T_k}(y_j - y_i)/K_{ji}`, ``(B,)`` float64: 0 on a
    tie at the edge of the set, ``inf`` if every crossing pair has :math:`K_{ji} = 0`."""
    _check(logits, K, 0.0)
    _check_k(logits, k)
    y, Kd = logits.detach().double(), K.detach().double().to(logits.device)
    gap = y[:, :, None] - y[:, None, :]  # (B, C, C): y_j - y_i
    r = torch.where(gap > 0, gap / Kd, torch.zeros_like(gap))
    return _min_over_crossing_pairs(r, top_k_sets(y, k))


def topk_margin(logits: torch.Tensor, K: torch.Tensor, eps: float, k: int) -> torch.Tensor:
    r""":math:`m_k = \min_{j \in T_k}[y_j - \max_{i \notin T_k}(y_i + \varepsilon K_{ji})]`,
    ``(B,)`` float64; the top-:math:`k` set is certified at ``eps`` iff :math:`m_k > 0`."""
    _check(logits, K, eps)
    _check_k(logits, k)
    y, Kd = logits.detach().double(), K.detach().double().to(logits.device)
    m = y[:, :, None] - y[:, None, :] - eps * Kd  # (B, C, C): y_j - y_i - eps K_ji
    return _min_over_crossing_pairs(m, top_k_sets(y, k))


def certified_k(logits: torch.Tensor, K: torch.Tensor, eps: float, k_max: int) -> torch.Tensor:
    """Per input the smallest ``k`` in ``[1, k_max]`` whose top-``k`` set is certified at
    ``eps`` (the relaxed model's answer), or 0 (⊥) if none is; ``(B,)`` int64."""
    _check(logits, K, eps)
    _check_k(logits, k_max, "k_max")
    out = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    for k in range(k_max, 0, -1):  # a loop over k (at most C - 1), not over inputs
        out = torch.where(topk_margin(logits, K, eps, k) > 0, k, out)
    return out


class TopKSetMargin(nn.Module):
    r"""Wraps ``net`` with fixed per-sample sets ``in_set`` ``(B, C)`` into two logits
    :math:`[\min_{j \in T} y_j, \max_{i \notin T} y_i]`: class 0 stays predicted iff the set
    :math:`T` is still the top-:math:`k` set. Attacking label 0 with
    :func:`course_lib.lipschitz.attacks.pgd_l2_margin` ascends
    :math:`\max_{i \notin T} y_i - \min_{j \in T} y_j`: it attacks a top-:math:`k` certificate."""

    def __init__(self, net: nn.Module, in_set: torch.Tensor) -> None:
        super().__init__()
        self.net, self.in_set = net, in_set

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)  # (B, C)
        inside = y.masked_fill(~self.in_set, torch.inf).amin(1)  # (B,)
        outside = y.masked_fill(self.in_set, -torch.inf).amax(1)  # (B,)
        return torch.stack([inside, outside], 1)  # (B, 2)


def _min_over_crossing_pairs(values: torch.Tensor, in_set: torch.Tensor) -> torch.Tensor:
    """``values`` ``(B, C, C)`` indexed ``[b, j, i]``: min over ``j`` in the set, ``i`` out."""
    crossing = in_set[:, :, None] & ~in_set[:, None, :]  # (B, C, C)
    return values.masked_fill(~crossing, torch.inf).flatten(1).amin(1)  # (B,)


def _check_k(logits: torch.Tensor, k: int, name: str = "k") -> None:
    C = logits.shape[1]
    check_count(k, name, minimum=1)
    if k > C - 1:
        raise ValueError(f"{name} must be in [1, C - 1] = [1, {C - 1}], got {k}")
