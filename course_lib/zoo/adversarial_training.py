"""Recipes of chapter 3 (adversarial training)."""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import TensorLoader, load_mnist
from ..models import small_cnn
from ..train import pgd_at_loss, train_epoch
from .trainers import Recipe


def _train_mnist_pgd_at(model: nn.Module, s: dict) -> None:
    """Madry et al. (2018) PGD-AT with a linear epsilon ramp over the first ``ramp`` epochs: at
    eps = 0.3 from the first epoch, this small CNN collapses to chance on MNIST."""
    x, y, _, _ = load_mnist(s["data"])
    dev = next(model.parameters()).device
    loader = TensorLoader(x.to(dev), y.to(dev), batch_size=s["batch"], seed=s["seed"])
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    for epoch in tqdm(range(s["epochs"]), desc=s["desc"], leave=False):
        eps = s["eps"] * min(1.0, (epoch + 1) / s["ramp"])
        train_epoch(model, loader, pgd_at_loss(eps, steps=s["steps"]), optimizer)


RECIPES: dict[str, Recipe] = {
    # linf eps = 0.3, PGD-10 (quick) / PGD-40 as in Madry et al. (full)
    "mnist_pgd_at": Recipe(
        build=lambda: small_cnn(1, 10, 28),
        train=_train_mnist_pgd_at,
        settings={
            p: {
                "data": p,
                "eps": 0.3,
                "steps": steps,
                "epochs": epochs,
                "ramp": 8,
                "lr": 1e-3,
                "batch": 64,
                "seed": 0,
                "desc": "mnist_pgd_at",
            }
            for p, steps, epochs in (("quick", 10, 20), ("full", 40, 40))
        },
    ),
}
