r"""Losses for 1-Lipschitz classifiers: the constraint fixes the slope, the loss fixes the margin.

A 1-Lipschitz logit map cannot be made confident by scaling its weights, so plain cross-entropy
keeps pushing margins that the constraint caps. Two remedies:

* **hKR** (Serrurier, Mamalet, González-Sanz, Boissin, Loubes, del Barrio, 2021): a hinge term
  that asks for a margin :math:`m` plus a Kantorovich–Rubinstein term that spreads the classes
  apart (the dual of the Wasserstein-1 distance);
* **τ-CE** (Béthune, Boissin, Serrurier, Mamalet, Friedrich, González-Sanz, 2022):
  :math:`\mathrm{CE}(\tau f(x), y)/\tau`; small :math:`\tau` behaves like a hinge with a large
  margin (robust, less accurate), large :math:`\tau` like CE (accurate, small margins).

Béthune et al.'s point: the accuracy/robustness trade-off is set by :math:`m`, :math:`\alpha`,
:math:`\tau`, not by the 1-Lipschitz constraint itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validate import check_nonnegative, check_positive
from .certificates import check_logits


def hkr_loss(logits: torch.Tensor, y: torch.Tensor, alpha: float, margin: float) -> torch.Tensor:
    r"""Multiclass hinge–Kantorovich–Rubinstein loss in **deel-torchlip's** convention
    (``hkr_multiclass_loss``): :math:`\alpha\,\mathrm{hinge} - (1-\alpha)\,\mathrm{KR}`,
    :math:`\alpha \in [0, 1]`.

    One-vs-all with :math:`s_{ik} = \pm 1` (:math:`+1` iff :math:`y_i = k`):
    :math:`\mathrm{hinge} = \frac{1}{BK}\sum_{i,k} w_{ik}\,\max(0, m/2 - s_{ik} f_k(x_i))` with
    the positive terms weighted by :math:`w = K-1`, and
    :math:`\mathrm{KR} = \frac1K \sum_k \big(\mathrm{mean}_{y_i = k} f_k(x_i) -
    \mathrm{mean}_{y_i \ne k} f_k(x_i)\big)`. The hinge uses **half** the margin, :math:`m/2`, as
    both deel libraries do.

    **Deviation from deel-torchlip** (``kr_loss``): a class :math:`k` absent from the batch (or
    the only class in it) contributes **0** to our KR term, whereas deel-torchlip's empty mean
    makes its term :math:`-\mathrm{mean}_i f_k(x_i)` there. With full batches of balanced classes
    (the course's training) the two agree; on a batch missing a class they differ. Kept because
    the course's trained models use it (``tests/test_constrained.py`` pins both behaviours).

    Why this convention: it is the PyTorch peer we test against, and :math:`\alpha \in [0,1]` is
    a convex mix. deel-lip (TensorFlow) writes :math:`-\mathrm{KR} + \alpha'\,\mathrm{hinge}`
    with :math:`\alpha' \in [0, \infty)`; the two agree up to a factor when
    :math:`\alpha' = \alpha/(1-\alpha)`, so hyper-parameters do not transfer unchanged.
    """
    check_logits(logits)
    _check_alpha(alpha)
    check_nonnegative(margin, "margin")
    B, K = logits.shape
    onehot = F.one_hot(y, K).to(logits.dtype)  # (B, K)
    sign = 2 * onehot - 1  # (B, K) in {-1, +1}
    hinge = F.relu(margin / 2 - sign * logits) * torch.where(onehot > 0, K - 1.0, 1.0)  # (B, K)
    pos = onehot.sum(0)  # (K,) samples of each class
    mean_pos = (onehot * logits).sum(0) / pos.clamp_min(1)  # (K,)
    mean_neg = ((1 - onehot) * logits).sum(0) / (B - pos).clamp_min(1)  # (K,)
    kr = torch.where((pos > 0) & (pos < B), mean_pos - mean_neg, 0.0).mean()
    return alpha * hinge.mean() - (1 - alpha) * kr


def tau_cross_entropy(logits: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    r""":math:`\mathrm{CE}(\tau f(x), y) / \tau` (Béthune et al., 2022; deel-torchlip's
    ``TauCrossEntropyLoss``). The division by :math:`\tau` keeps the gradient scale comparable
    across temperatures."""
    check_logits(logits)
    check_positive(tau, "tau")
    return F.cross_entropy(tau * logits, y) / tau


def hkr_loss_fn(alpha: float, margin: float):
    """:func:`hkr_loss` as a training loss ``loss_fn(model, x, y)``."""
    _check_alpha(alpha)
    check_nonnegative(margin, "margin")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return hkr_loss(model(x), y, alpha, margin)

    return loss_fn


def tau_cross_entropy_fn(tau: float):
    """:func:`tau_cross_entropy` as a training loss ``loss_fn(model, x, y)``."""
    check_positive(tau, "tau")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return tau_cross_entropy(model(x), y, tau)

    return loss_fn


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1] (deel-torchlip's), got {alpha!r}")
