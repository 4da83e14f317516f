r"""One training loop for every defense, plus clean and robust accuracy.

A training defense is just a loss ``loss_fn(model, x, y) -> scalar``; :func:`train_epoch` calls it
on every batch. Plain training uses :func:`cross_entropy_loss`; Madry's adversarial training is
:func:`pgd_at_loss`; later chapters add TRADES, MACER, ... with the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import pgd
from .validate import (
    check_batch,
    check_channels,
    check_count,
    check_fits,
    check_labels,
    check_nonnegative,
    check_positive,
    checked_by,
)

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Empirical risk :math:`\frac1B \sum_i \ell(f(x_i), y_i)`, :math:`\ell` the cross-entropy."""
    check_batch(x, "x")  # no forward here: it runs on every training batch
    check_channels(model, x)
    logits = model(x)  # (B, K)
    check_labels(x, y, num_classes=logits.shape[1])
    return F.cross_entropy(logits, y)


def pgd_at_loss(
    eps: float, alpha: float | None = None, steps: int = 7, norm: str = "linf"
) -> LossFn:
    r"""Madry et al. (2018) adversarial training: the saddle-point objective

    .. math::  \min_\theta \frac1B \sum_i \max_{\|\delta_i\|_p \le \varepsilon}
               \ell(f_\theta(x_i + \delta_i), y_i),

    with the inner max approximated by PGD (random start) and the outer min by the optimizer.
    As in the reference code, the loss uses adversarial examples only and the attack runs on the
    model in its current (training) mode.
    """
    check_nonnegative(eps, "eps")
    check_count(steps, "steps", minimum=1)

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = pgd(model, x, y, eps, alpha=alpha, steps=steps, norm=norm)  # inner max
        return F.cross_entropy(model(x_adv), y)  # outer min

    return loss_fn


def train_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
) -> float:
    """One pass over ``loader``: for each batch, ``loss_fn`` then one optimizer step.

    Batches are moved to the model's device; the model trains in ``train()`` mode and gets its
    previous mode back afterwards. Returns the mean loss over the batches. The batches are not
    probed against the model: a loss may transform them first (resize-and-pad, noise, ...), so
    each loss checks its own input.
    """
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    total, batches = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, batches = total + loss.item(), batches + 1
    model.train(was_training)
    return total / max(batches, 1)


def fit(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn = cross_entropy_loss,
    epochs: int = 10,
    lr: float = 1e-3,
    desc: str = "training",
) -> list[float]:
    """Train with Adam for ``epochs`` epochs behind a progress bar; returns the loss per epoch.

    Anything beyond this (schedules, epsilon ramps) is written as a plain loop over
    :func:`train_epoch` where it is needed, so that it stays visible.
    """
    from tqdm.auto import tqdm

    check_count(epochs, "epochs", minimum=0)
    check_positive(lr, "lr")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    with tqdm(range(epochs), desc=desc, leave=False) as bar:
        for _ in bar:
            history.append(train_epoch(model, loader, loss_fn, optimizer))
            bar.set_postfix(loss=f"{history[-1]:.3f}")
    return history


def _check_predict_args(model, x, batch_size=1024):
    check_batch(x, "x")
    check_count(batch_size, "batch_size", minimum=1)
    check_fits(model, x)


@checked_by(_check_predict_args)
@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predicted classes ``(N,)``, evaluated in chunks of ``batch_size``."""
    return torch.cat([model(chunk).argmax(1) for chunk in x.split(batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of ``x`` classified as ``y``."""
    check_batch(x, "x")
    check_count(batch_size, "batch_size", minimum=1)
    check_fits(model, x, y)
    return (predict.__wrapped__(model, x, batch_size) == y).float().mean().item()


def robust_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, batch_size: int = 512
) -> float:
    """Fraction of ``x`` still classified as ``y`` after ``attack(model, x, y)``, run per chunk.

    ``attack`` carries its threat model: pass e.g. ``lambda m, x, y: pgd(m, x, y, eps=0.1)`` so
    the number is never reported without its attack and epsilon.
    """
    check_batch(x, "x")
    check_count(batch_size, "batch_size", minimum=1)
    check_fits(model, x, y)
    if not callable(attack):
        raise ValueError(f"attack must be a callable attack(model, x, y), got {attack!r}")
    correct = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        x_adv = attack(model, xb, yb)
        correct += (predict.__wrapped__(model, x_adv) == yb).sum().item()
    return correct / x.shape[0]
