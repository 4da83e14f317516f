"""What every recipe module shares: the :class:`Recipe` record and the two training loops.

A recipe's ``train(model, settings)`` usually calls :func:`train_moons` or :func:`train_mnist`
with the loss of its method (``loss_fn(model, x, y) -> scalar``, the shape every training defense
of the course has), so a chapter adds a method by adding a loss, not a loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..data import TensorLoader, load_mnist, load_toy2d
from ..train import cross_entropy_loss, fit

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Recipe:
    """How to build and train one named model, with settings per profile."""

    build: Callable[[], nn.Module]
    train: Callable[[nn.Module, dict], None]
    settings: dict[str, dict]


def train_moons(model: nn.Module, s: dict, loss_fn: LossFn = cross_entropy_loss) -> None:
    """Train on the two-moons toy (``s``: n, noise, epochs, lr, seed, desc)."""
    x, y = load_toy2d("moons", n=s["n"], noise=s["noise"], seed=0)
    dev = next(model.parameters()).device
    loader = TensorLoader(x.to(dev), y.to(dev), batch_size=64, seed=s["seed"])
    fit(model, loader, loss_fn, epochs=s["epochs"], lr=s["lr"], desc=s["desc"])


def train_mnist(model: nn.Module, s: dict, loss_fn: LossFn = cross_entropy_loss) -> None:
    """Train on MNIST of profile ``s["data"]`` (``s``: data, epochs, lr, seed, desc)."""
    x_train, y_train, _, _ = load_mnist(s["data"])
    dev = next(model.parameters()).device
    loader = TensorLoader(x_train.to(dev), y_train.to(dev), batch_size=64, seed=s["seed"])
    fit(model, loader, loss_fn, epochs=s["epochs"], lr=s["lr"], desc=s["desc"])
