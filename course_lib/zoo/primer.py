"""Recipes of chapter 0 (the primer): the models every later chapter attacks or defends."""

from __future__ import annotations

from .. import config
from ..models import mlp, small_cnn
from .trainers import Recipe, train_mnist, train_moons

RECIPES: dict[str, Recipe] = {
    "moons_mlp": Recipe(
        build=lambda: mlp(2, (64, 64), 2),
        train=train_moons,
        settings={
            p: {"n": n, "noise": 0.15, "epochs": 60, "lr": 1e-2, "seed": 0, "desc": "moons_mlp"}
            for p, n in (("quick", 400), ("full", 2000))
        },
    ),
    "mnist_cnn": Recipe(
        build=lambda: small_cnn(1, 10, 28),
        train=train_mnist,
        settings={
            p: {"data": p, "epochs": 10, "lr": 2e-3, "seed": 0, "desc": "mnist_cnn"}
            for p in config.PROFILES
        },
    ),
}
