"""Recipes of chapter 5 part 3 (GloRo nets, notebook 5.7): ReLU MLPs trained with GloRo's
:math:`C + 1`-logit cross-entropy (:mod:`course_lib.certify.gloro`) on the two-moons toy and on
MNIST, above the evaluation radius as in the reference (Leino et al., 2021). Names carry the
training radius: ``zoo.load("moons_gloro")``.

Like chapter 5 part 2's nets, these have no :class:`~course_lib.models.Normalize` first layer (its
:math:`1/s` would multiply every Lipschitz bound).
"""

from __future__ import annotations

import math

from .. import config
from ..certify import gloro
from ..certify.gloro import GloroNet, gloro_loss_fn
from ..data import load_mnist
from ..models import mlp
from .trainers import Recipe, train_mnist, train_moons

TRAINING_MODULES = (gloro,)

TOY_EPS = 0.05  # evaluation radius on the toy (unit square)
TOY_EPS_TRAIN = 0.075  # trained 1.5x above, the reference's MNIST ratio (0.45 for 0.3)
TOY_EPS_TRAIN_SWEEP = (0.025, 0.075, 0.15)  # moons_gloro_<eps>: the training radius compared
MNIST_EPS = 0.3  # the GloRo README's first MNIST row
MNIST_EPS_TRAIN = 0.45  # the reference's snapshot config for MNIST at 0.3
BATCH = 64  # the batch size of zoo.trainers


def _train_moons_gloro(model: GloroNet, s: dict) -> None:
    steps = s["epochs"] * math.ceil(s["n"] / BATCH)
    train_moons(model, s, gloro_loss_fn(s["eps_train"], steps))


def _train_mnist_gloro(model: GloroNet, s: dict) -> None:
    n_train = len(load_mnist(s["data"])[1])
    steps = s["epochs"] * math.ceil(n_train / BATCH)
    train_mnist(model, s, gloro_loss_fn(s["eps_train"], steps))


def _toy(eps_train: float) -> Recipe:
    return Recipe(
        build=lambda: GloroNet(mlp(2, (64, 64), 2)),
        train=_train_moons_gloro,
        settings={
            p: {
                "n": 400,
                "noise": 0.15,
                "epochs": 100,
                "lr": 1e-2,
                "seed": 0,
                "eps_train": eps_train,
                "desc": f"moons GloRo eps={eps_train:g}",
            }
            for p in config.PROFILES
        },
    )


RECIPES: dict[str, Recipe] = {
    "moons_gloro": _toy(TOY_EPS_TRAIN),
    **{f"moons_gloro_{e:g}": _toy(e) for e in TOY_EPS_TRAIN_SWEEP if e != TOY_EPS_TRAIN},
    "mnist_gloro": Recipe(
        build=lambda: GloroNet(mlp(784, (128, 128), 10)),
        train=_train_mnist_gloro,
        settings={
            p: {
                "data": p,
                "epochs": 20 if p == "quick" else 30,
                "lr": 1e-3,
                "seed": 0,
                "eps_train": MNIST_EPS_TRAIN,
                "desc": "mnist GloRo",
            }
            for p in config.PROFILES
        },
    ),
}
