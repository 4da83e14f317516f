"""Recipes of chapter 1 (Lipschitz continuity): a 1-D regression net and an MNIST MLP for the
layer-product bound."""

from __future__ import annotations

import torch
from torch import nn

from .. import config
from ..data import TensorLoader
from ..models import MNIST_MEAN, MNIST_STD, Normalize, mlp
from ..train import fit
from .trainers import Recipe, train_mnist


def _wave_1d_target(x: torch.Tensor) -> torch.Tensor:
    """The wiggly 1-D function the chapter-1 net learns on [0, 1]."""
    return 0.5 * torch.sin(2 * torch.pi * x) + 0.4 * torch.tanh(20 * (x - 0.6))


def _train_wave_1d_mlp(model: nn.Module, s: dict) -> None:
    x = torch.linspace(0, 1, s["n"]).view(-1, 1)  # (n, 1)
    dev = next(model.parameters()).device
    loader = TensorLoader(x.to(dev), _wave_1d_target(x).to(dev), batch_size=64, seed=s["seed"])
    mse = lambda m, xb, yb: torch.nn.functional.mse_loss(m(xb), yb)  # noqa: E731
    fit(model, loader, mse, epochs=s["epochs"], lr=1e-2, desc="wave_1d_mlp")


RECIPES: dict[str, Recipe] = {
    "wave_1d_mlp": Recipe(
        build=lambda: nn.Sequential(
            nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)
        ),
        train=_train_wave_1d_mlp,
        settings={
            "quick": {"n": 256, "epochs": 150, "seed": 0},
            "full": {"n": 256, "epochs": 150, "seed": 0},
        },
    ),
    "mnist_mlp": Recipe(
        build=lambda: nn.Sequential(Normalize(MNIST_MEAN, MNIST_STD), mlp(784, (128, 128), 10)),
        train=train_mnist,
        settings={
            p: {"data": p, "epochs": 10, "lr": 1e-3, "seed": 0, "desc": "mnist_mlp"}
            for p in config.PROFILES
        },
    ),
}
