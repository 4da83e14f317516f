"""Recipes of chapter 5 part 1 (randomized smoothing): base classifiers trained with the noise
they are certified with (Cohen et al. 2019; Yang et al. 2020), and MACER (Zhai et al. 2020).
Names carry the noise level: ``zoo.load("mnist_gauss_0.25")``."""

from __future__ import annotations

from torch import nn

from .. import config
from ..certify import noise_shapes, soft_smoothing
from ..models import mlp, small_cnn
from .trainers import Recipe, train_mnist, train_moons

TRAINING_MODULES = (noise_shapes, soft_smoothing)

SMOOTH_TOY_SIGMAS = (0.02, 0.05, 0.1, 0.2)
SMOOTH_MNIST_SIGMAS = (0.12, 0.25, 0.5)
MACER_TOY_GRID = tuple((gamma, lam) for gamma in (2.0, 4.0, 8.0) for lam in (0.0, 4.0, 16.0))


def _noise_loss(s: dict):
    """The training loss named by ``s["loss"]``: Gaussian, uniform or Laplace noise augmentation,
    or MACER."""
    loss = s["loss"]
    if loss == "gauss":
        return soft_smoothing.gaussian_augmentation_loss(s["sigma"])
    if loss == "macer":
        return soft_smoothing.macer_loss(s["sigma"], k=s["k"], gamma=s["gamma"], lam=s["lam"])
    shape = {"uniform": noise_shapes.SmoothUniformL1, "laplace": noise_shapes.SmoothLaplaceL1}
    return soft_smoothing.noise_augmentation_loss(shape[loss](None, 2, s["lam"]))


def _train_moons_noisy(model: nn.Module, s: dict) -> None:
    train_moons(model, s, _noise_loss(s))


def _train_mnist_noisy(model: nn.Module, s: dict) -> None:
    train_mnist(model, s, _noise_loss(s))


def _smooth_recipe(kind: str, full: dict | None = None, **setting) -> Recipe:
    """A toy MLP (``kind="moons"``) or the small MNIST CNN trained with the loss in ``setting``;
    ``full`` overrides settings in the full profile."""
    name = "_".join(f"{v:g}" if isinstance(v, float) else str(v) for v in setting.values())
    if kind == "moons":
        base = {
            "n": 400,
            "noise": 0.15,
            "epochs": 60,
            "lr": 1e-2,
            "seed": 0,
            "desc": f"moons {name}",
        }
        return Recipe(
            build=lambda: mlp(2, (64, 64), 2),
            train=_train_moons_noisy,
            settings={p: {**base, **setting} for p in config.PROFILES},
        )
    base = {"epochs": 10, "lr": 2e-3, "seed": 0, "desc": f"mnist {name}"}
    return Recipe(
        build=lambda: small_cnn(1, 10, 28),
        train=_train_mnist_noisy,
        settings={
            "quick": {**base, "data": "quick", **setting},
            "full": {**base, "data": "full", **setting, **(full or {})},
        },
    )


_TOY_NOISES = [("uniform", 0.05 * 3**0.5), ("laplace", 0.05 / 2**0.5)]  # std of moons_gauss_0.05
RECIPES: dict[str, Recipe] = (
    {
        f"moons_gauss_{s:g}": _smooth_recipe("moons", loss="gauss", sigma=s)
        for s in SMOOTH_TOY_SIGMAS
    }
    | {f"moons_{noise}": _smooth_recipe("moons", loss=noise, lam=lam) for noise, lam in _TOY_NOISES}
    | {
        f"moons_macer_g{g:g}_l{lam:g}": _smooth_recipe(
            "moons", loss="macer", sigma=0.05, k=16, gamma=g, lam=lam
        )
        for g, lam in MACER_TOY_GRID
    }
    | {
        f"mnist_gauss_{s:g}": _smooth_recipe("mnist", loss="gauss", sigma=s)
        for s in SMOOTH_MNIST_SIGMAS
    }
)
RECIPES["mnist_macer_0.25"] = _smooth_recipe(  # k = 8 noisy copies on a CPU, 16 as in the paper
    "mnist", full={"k": 16}, loss="macer", sigma=0.25, k=8, gamma=8.0, lam=12.0
)
