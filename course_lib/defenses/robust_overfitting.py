r"""Robust overfitting (Rice, Wong & Kolter, 2020, "Overfitting in adversarially robust deep
learning") and its classic remedy, early stopping on a held-out validation split.

Rice et al. train PGD-AT long with a piecewise-constant learning rate and log, after every
epoch, the robust accuracy on training and test data. Shortly after the learning-rate drop the
robust *test* accuracy peaks and then declines while the robust *training* accuracy keeps rising:
the model fits the adversarial examples of its training set instead of a robust rule. Keeping the
weights of the epoch with the best robust accuracy on a held-out validation split,

.. math::  \theta^\star = \theta^{(e^\star)}, \qquad
           e^\star = \arg\max_e \mathrm{acc}_{\mathrm{PGD}}(f_{\theta^{(e)}}, \mathcal D_{val}),

recovers most of the peak. :func:`train_with_history` is that loop, a plain function over
:func:`course_lib.train.train_epoch`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..train import LossFn, robust_accuracy, train_epoch
from ..validate import check_count, check_positive

Evaluate = Callable[[nn.Module], dict[str, float]]


def piecewise_lr(
    lr: float, epochs: int, milestones: Sequence[float] = (0.5, 0.75), factor: float = 0.1
) -> list[float]:
    """Learning rate per epoch: ``lr``, multiplied by ``factor`` at each fraction of ``epochs``
    in ``milestones`` (Rice et al.: 0.1, divided by 10 at 50% and 75%; they update it per
    iteration, we per epoch)."""
    check_positive(lr, "lr")
    check_count(epochs, "epochs", minimum=1)
    check_positive(factor, "factor")
    if any(not 0 <= m <= 1 for m in milestones):
        raise ValueError(f"milestones must be fractions in [0, 1], got {list(milestones)}")
    return [lr * factor ** sum(e >= m * epochs for m in milestones) for e in range(epochs)]


def robust_evaluator(
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    attack: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
) -> Evaluate:
    """``evaluate(model) -> {split: robust accuracy}`` on fixed ``(x, y)`` subsets under
    ``attack(model, x, y)``, with the model in eval mode (its mode is restored)."""
    if not splits:
        raise ValueError("splits must name at least one (x, y) subset, got an empty mapping")

    def evaluate(model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        accs = {name: robust_accuracy(model, x, y, attack) for name, (x, y) in splits.items()}
        model.train(was_training)
        return accs

    return evaluate


class History(NamedTuple):
    """Per-epoch record of :func:`train_with_history`: ``metrics[name][e]`` after epoch ``e``
    (0-based; ``"loss"`` is the mean training loss), the learning rate of each epoch, the
    selected epoch and its weights."""

    metrics: dict[str, list[float]]
    lr: list[float]
    best_epoch: int
    best_state: dict[str, torch.Tensor]


def train_with_history(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    lrs: Sequence[float],
    evaluate: Evaluate,
    select: str = "val",
    desc: str = "training",
) -> History:
    r"""Train for ``len(lrs)`` epochs (epoch ``e`` at learning rate ``lrs[e]``), call
    ``evaluate(model)`` after each, and keep a copy of the weights with the highest
    ``evaluate(model)[select]`` (the first such epoch on ties): early stopping by checkpoint
    selection, as Rice et al. do. Training runs to the end, so the history shows what early
    stopping avoided; the model is left at its last epoch and ``History.best_state`` holds the
    selected weights (``model.load_state_dict(history.best_state)`` stops early)."""
    from tqdm.auto import tqdm

    check_count(len(lrs), "len(lrs)", minimum=1)
    for lr in lrs:
        check_positive(lr, "lrs[e]")
    metrics: dict[str, list[float]] = {"loss": []}
    best_epoch, best_value, best_state = -1, -float("inf"), {}
    for e in tqdm(range(len(lrs)), desc=desc, leave=False):
        for group in optimizer.param_groups:
            group["lr"] = lrs[e]
        metrics["loss"].append(train_epoch(model, loader, loss_fn, optimizer))
        scores = evaluate(model)
        if select not in scores:
            raise ValueError(
                f"select must be one of the evaluated names {sorted(scores)}, got {select!r}"
            )
        for name, value in scores.items():
            metrics.setdefault(name, []).append(value)
        if scores[select] > best_value:
            best_epoch, best_value = e, scores[select]
            best_state = copy.deepcopy(model.state_dict())
    return History(metrics, list(lrs), best_epoch, best_state)
