r"""Adversarial training (AT): the lecture's general algorithm, and single-step FGSM-AT.

Madry et al. (2018) write AT as the saddle-point problem

.. math::  \min_\theta\ \mathbb{E}_{(x, y) \sim \mathcal{D}}
           \Big[\max_{\delta \in \Omega} \mathcal{L}(f_\theta(x + \delta), y)\Big],

solved per mini-batch by :func:`course_lib.train.pgd_at_loss` (inner max by PGD, outer min by one
optimizer step). The lecture also gives a coarser **general algorithm** (:func:`general_at`): at
round :math:`t` attack a subset :math:`\mathcal{D}'` with the current :math:`\theta^{(t)}`, train
on :math:`\mathcal{D} \cup \mathcal{D}_{adv}` for :math:`N \ge 1` epochs, repeat. Its adversarial
examples go stale while :math:`\theta` moves, which is why the per-batch version is the standard.

:func:`fgsm_at_loss` is the cheap single-step variant whose failure, catastrophic overfitting
(Wong, Rice & Kolter, 2020), chapter 3's evaluation notebook detects.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import input_gradient, pgd
from ..data import TensorLoader
from ..threat import THREATS
from ..train import LossFn, cross_entropy_loss, train_epoch
from ..validate import check_count, check_labels, check_nonnegative, check_pixels, check_positive


def general_at(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    rounds: int,
    *,
    epochs_per_round: int = 1,
    subset: float = 1.0,
    optimizer: torch.optim.Optimizer | None = None,
    batch_size: int = 64,
    on_round: Callable[[int, nn.Module], None] | None = None,
) -> None:
    r"""The lecture's general AT algorithm (Madry et al., 2018, as written in the course slides).

    For :math:`t = 1, \dots,` ``rounds``:

    1. draw :math:`\mathcal{D}' \subseteq \mathcal{D}`, a random fraction ``subset`` of the data;
    2. :math:`\mathcal{D}_{adv} = \{(x_i + \delta_i^{(t)}, y_i) : x_i \in \mathcal{D}'\}` with
       :math:`\delta_i^{(t)}` = ``attack(model, x_i, y_i) - x_i`` at the current
       :math:`\theta^{(t)}` (model in eval mode, so BatchNorm statistics are not updated);
    3. train on :math:`\mathcal{D}^{(t)} = \mathcal{D} \cup \mathcal{D}_{adv}` for
       ``epochs_per_round`` epochs of plain cross-entropy.

    ``on_round(t, model)`` is called after each round (e.g. to record a snapshot). The optimizer
    (Adam 1e-3 by default) is kept across rounds. Training in place; returns nothing.
    """
    check_pixels(x)
    check_labels(x, y)
    check_count(rounds, "rounds", minimum=1)
    check_count(epochs_per_round, "epochs_per_round", minimum=1)
    if not (isinstance(subset, int | float) and 0 < subset <= 1):
        raise ValueError(f"subset must be a fraction in (0, 1], got {subset!r}")
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)
    n = x.shape[0]
    for t in range(rounds):
        idx = torch.randperm(n, device=x.device)[: max(1, round(subset * n))]  # D'
        was_training = model.training
        model.eval()
        batches = zip(x[idx].split(512), y[idx].split(512), strict=True)
        x_adv = torch.cat([attack(model, xb, yb) for xb, yb in batches])  # D_adv at theta^(t)
        model.train(was_training)
        loader = TensorLoader(torch.cat([x, x_adv]), torch.cat([y, y[idx]]), batch_size, seed=t)
        for _ in range(epochs_per_round):
            train_epoch(model, loader, cross_entropy_loss, optimizer)
        if on_round is not None:
            on_round(t, model)


def fgsm_at_loss(eps: float, alpha: float | None = None, random_init: bool = False) -> LossFn:
    r"""Single-step adversarial training: the inner max by one signed-gradient step.

    ``random_init=False``, ``alpha = eps``: FGSM-AT (Goodfellow et al., 2015, without the clean
    half of their loss). ``random_init=True``: "fast AT" of Wong, Rice & Kolter (2020), Algorithm 3,
    :math:`\delta \sim U(-\varepsilon, \varepsilon)`, one step of size :math:`\alpha` (their
    :math:`1.25\varepsilon`), projected back onto the ball:

    .. math::  \delta = \Pi_{\|\delta\|_\infty \le \varepsilon}\big(\delta + \alpha\,
               \mathrm{sign}(\nabla_\delta \mathcal{L}(f_\theta(x + \delta), y))\big).

    Without the random start (or with a too large step) training can collapse into catastrophic
    overfitting: FGSM accuracy stays high while PGD accuracy drops to near zero within an epoch.
    Deviations: no cyclic learning rate or mixed precision (the paper's other speed-ups).
    """
    check_nonnegative(eps, "eps")
    alpha = eps if alpha is None else alpha
    if eps > 0:
        check_positive(alpha, "alpha")
    linf = THREATS["linf"]

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x0 = linf.random_start(x, eps) if random_init else x
        grad = input_gradient(model, x0, y)  # (B, ...)
        x_adv = linf.project(x0 + linf.step(grad, alpha), x, eps)
        return F.cross_entropy(model(x_adv), y)

    return loss_fn


def pgd_attack(eps: float, steps: int = 10, alpha: float | None = None):
    """``attack(model, x, y)`` for :func:`general_at`: untargeted ℓ∞ PGD with a random start."""
    return lambda model, x, y: pgd(model, x, y, eps, steps=steps, alpha=alpha)
