"""Named, cached model recipes: ``zoo.load("mnist_cnn")`` trains once, then loads in milliseconds.

A recipe is a ``build()`` that returns the untrained architecture, a ``train(model, settings)``
that trains it in place, and its settings for each profile. The cache file
``<cache>/models/<name>-<profile>.pt`` stores the weights together with a key: the SHA-256 of the
recipe's source code and settings, of the library code training goes through, and of torch's
version (:func:`recipe_key`). Building and training run with their own seed inside
:func:`config.isolated_rng`, so loading a model never changes a notebook's random numbers.
A missing, corrupt or stale file (the recipe or its settings changed) is retrained with a
warning. Writes are atomic (temporary file, then rename) and loads use
``torch.load(weights_only=True)``, which cannot execute code from the file.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import attacks, config, data, models, threat, train
from .certify import noise_shapes, soft_smoothing
from .data import TensorLoader, load_mnist, load_toy2d
from .models import MNIST_MEAN, MNIST_STD, Normalize, mlp, small_cnn
from .train import cross_entropy_loss, fit
from .validate import check_choice


@dataclass(frozen=True)
class Recipe:
    """How to build and train one named model, with settings per profile."""

    build: Callable[[], nn.Module]
    train: Callable[[nn.Module, dict], None]
    settings: dict[str, dict]


# ----- the recipes ---------------------------------------------------------------------------


def _train_loss(s: dict):
    """The training loss named by ``s["loss"]``: plain cross-entropy, or the noise augmentations and
    MACER of chapter 5 (Cohen et al. 2019; Yang et al. 2020; Zhai et al. 2020)."""
    loss = s.get("loss", "ce")
    if loss == "ce":
        return cross_entropy_loss
    if loss == "gauss":
        return soft_smoothing.gaussian_augmentation_loss(s["sigma"])
    if loss == "macer":
        return soft_smoothing.macer_loss(s["sigma"], k=s["k"], gamma=s["gamma"], lam=s["lam"])
    shape = {"uniform": noise_shapes.SmoothUniformL1, "laplace": noise_shapes.SmoothLaplaceL1}
    return soft_smoothing.noise_augmentation_loss(shape[loss](None, 2, s["lam"]))


def _train_moons(model: nn.Module, s: dict) -> None:
    x, y = load_toy2d("moons", n=s["n"], noise=s["noise"], seed=0)
    dev = next(model.parameters()).device
    loader = TensorLoader(x.to(dev), y.to(dev), batch_size=64, seed=s["seed"])
    fit(model, loader, _train_loss(s), epochs=s["epochs"], lr=s["lr"], desc=s["desc"])


def _train_mnist(model: nn.Module, s: dict) -> None:
    x_train, y_train, _, _ = load_mnist(s["data"])
    dev = next(model.parameters()).device
    loader = TensorLoader(x_train.to(dev), y_train.to(dev), batch_size=64, seed=s["seed"])
    fit(model, loader, _train_loss(s), epochs=s["epochs"], lr=s["lr"], desc=s["desc"])


# chapter 1 (Lipschitz continuity): a 1-D regression net, an MNIST MLP for the layer-product bound
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
    "moons_mlp": Recipe(
        build=lambda: mlp(2, (64, 64), 2),
        train=_train_moons,
        settings={
            p: {"n": n, "noise": 0.15, "epochs": 60, "lr": 1e-2, "seed": 0, "desc": "moons_mlp"}
            for p, n in (("quick", 400), ("full", 2000))
        },
    ),
    "mnist_cnn": Recipe(
        build=lambda: small_cnn(1, 10, 28),
        train=_train_mnist,
        settings={
            p: {"data": p, "epochs": 10, "lr": 2e-3, "seed": 0, "desc": "mnist_cnn"}
            for p in config.PROFILES
        },
    ),
    # chapter 1 (Lipschitz continuity)
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
        train=_train_mnist,
        settings={
            p: {"data": p, "epochs": 10, "lr": 1e-3, "seed": 0, "desc": "mnist_mlp"}
            for p in config.PROFILES
        },
    ),
}


# ----- loading and caching -------------------------------------------------------------------


# modules whose code shapes the trained weights: a change in any of them retrains the models
TRAINING_MODULES = (data, models, train, attacks, threat, noise_shapes, soft_smoothing)


def recipe_key(name: str, recipe: Recipe, settings: dict) -> str:
    """SHA-256 of the recipe (the source of its ``build``, its ``train`` and the zoo helpers
    ``train`` calls, its settings), the source
    of :data:`TRAINING_MODULES` and torch's version."""
    blob = json.dumps(
        {
            "name": name,
            "build": inspect.getsource(recipe.build),
            "train": [inspect.getsource(f) for f in (recipe.train, *_helpers(recipe.train))],
            "settings": settings,
            "modules": {m.__name__: inspect.getsource(m) for m in TRAINING_MODULES},
            "torch": torch.__version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _helpers(fn: Callable) -> list[Callable]:
    """The functions of this module that ``fn`` calls by name (e.g. :func:`_train_loss`): their
    source shapes the weights too, so it belongs in the key."""
    names = fn.__code__.co_names
    found = [fn.__globals__.get(n) for n in names]
    return [f for f in found if inspect.isfunction(f) and f.__module__ == fn.__module__]


def cache_path(name: str, profile: str) -> Path:
    """Where the weights of model ``name`` trained in ``profile`` are cached."""
    return config.cache_dir() / "models" / f"{name}-{profile}.pt"


def load(
    name: str, profile: str | None = None, device: str | torch.device | None = None
) -> nn.Module:
    """The trained model ``name`` in eval mode on ``device`` (default :func:`config.device`).

    Trains it (with a progress bar) on the first call for this profile and caches the weights.
    """
    check_choice(name, "name", RECIPES)
    profile = config.profile() if profile is None else profile
    check_choice(profile, "profile", config.PROFILES)
    recipe, settings = RECIPES[name], RECIPES[name].settings[profile]
    key, path = recipe_key(name, recipe, settings), cache_path(name, profile)
    device = config.device() if device is None else torch.device(device)

    seed = settings.get("seed", 0)
    with config.isolated_rng(seed):  # the caller's random numbers are left untouched
        model = recipe.build()
    state = _read_cached(path, key)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as err:  # same key but another architecture: treat as stale
            warnings.warn(
                f"zoo: cached {path.name} does not fit the model ({err}); retraining", stacklevel=2
            )
            state = None
    if state is None:
        model.to(device)
        with config.isolated_rng(seed):
            recipe.train(model, settings)
        _write_atomic(path, {"key": key, "state_dict": model.state_dict()})
    return model.to(device).eval()


def _read_cached(path: Path, key: str) -> dict | None:
    """The cached state dict, or ``None`` (with a warning) if it is corrupt or stale."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: any unpickling error
        warnings.warn(
            f"zoo: cached model {path} is corrupt ({type(err).__name__}); retraining", stacklevel=3
        )
        return None
    if not isinstance(payload, dict) or payload.get("key") != key:
        warnings.warn(
            f"zoo: cached model {path} is stale (its recipe, settings or library code "
            "changed); retraining",
            stacklevel=3,
        )
        return None
    return payload["state_dict"]


def _write_atomic(path: Path, payload: dict) -> None:
    """Write to a temporary file next to ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    cpu_payload = {
        "key": payload["key"],
        "state_dict": {k: v.detach().cpu() for k, v in payload["state_dict"].items()},
    }
    torch.save(cpu_payload, tmp)
    os.replace(tmp, path)


# ----- chapter 5: randomized smoothing -----------------------------------------------------------
# Base classifiers trained with the noise they are certified with (Cohen et al. 2019; Yang et al.
# 2020), and MACER (Zhai et al. 2020). Names carry the noise level: zoo.load("mnist_gauss_0.25").

SMOOTH_TOY_SIGMAS = (0.02, 0.05, 0.1, 0.2)
SMOOTH_MNIST_SIGMAS = (0.12, 0.25, 0.5)
MACER_TOY_GRID = tuple((gamma, lam) for gamma in (2.0, 4.0, 8.0) for lam in (0.0, 4.0, 16.0))


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
            train=_train_moons,
            settings={p: {**base, **setting} for p in config.PROFILES},
        )
    base = {"epochs": 10, "lr": 2e-3, "seed": 0, "desc": f"mnist {name}"}
    return Recipe(
        build=lambda: small_cnn(1, 10, 28),
        train=_train_mnist,
        settings={
            "quick": {**base, "data": "quick", **setting},
            "full": {**base, "data": "full", **setting, **(full or {})},
        },
    )


_TOY_NOISES = [("uniform", 0.05 * 3**0.5), ("laplace", 0.05 / 2**0.5)]  # std of moons_gauss_0.05
RECIPES.update(
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
