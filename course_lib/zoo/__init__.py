"""Named, cached model recipes: ``zoo.load("mnist_cnn")`` trains once, then loads in milliseconds.

Each chapter keeps its recipes in a module of its own (:mod:`.primer`, :mod:`.lipschitz`,
:mod:`.naive_defenses`, :mod:`.adversarial_training` and :mod:`.at_methods`,
:mod:`.regularization`, :mod:`.smoothing`, :mod:`.lipschitz_nets`, ...), each with a plain dict
``RECIPES`` and, when its training goes through
library code beyond :data:`TRAINING_MODULES`, a tuple ``TRAINING_MODULES`` of those modules;
this package merges the dicts into one :data:`RECIPES`. The shared training loops are in
:mod:`.trainers`.

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
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from .. import attacks, config, data, models, threat, train
from ..validate import check_choice
from . import (
    adversarial_training,
    at_methods,
    gloro,
    lipschitz,
    lipschitz_nets,
    mmcert,
    naive_defenses,
    primer,
    regularization,
    robust_overfitting,
    smoothing,
    splines,
    trainers,
)
from .smoothing import MACER_TOY_GRID, SMOOTH_MNIST_SIGMAS, SMOOTH_TOY_SIGMAS
from .trainers import Recipe

__all__ = [
    "MACER_TOY_GRID",
    "RECIPES",
    "SMOOTH_MNIST_SIGMAS",
    "SMOOTH_TOY_SIGMAS",
    "Recipe",
    "cache_path",
    "initial_weights",
    "is_cached",
    "load",
    "recipe_key",
]


# ----- loading and caching -------------------------------------------------------------------


# modules whose code shapes the trained weights: a change in any of them retrains the models
TRAINING_MODULES: tuple[ModuleType, ...] = (data, models, train, attacks, threat, trainers)

# the chapters' recipe modules, merged into one dict; each recipe remembers its module's extra
# training modules (e.g. chapter 5's smoothing losses) for its cache key
CHAPTERS = (
    primer,
    lipschitz,
    naive_defenses,
    adversarial_training,
    at_methods,
    regularization,
    smoothing,
    lipschitz_nets,
    gloro,
    splines,
    mmcert,
    robust_overfitting,
)
RECIPES: dict[str, Recipe] = {}
_EXTRA_MODULES: dict[str, tuple[ModuleType, ...]] = {}
for _chapter in CHAPTERS:
    for _name, _recipe in _chapter.RECIPES.items():
        if _name in RECIPES:
            raise RuntimeError(f"zoo: recipe {_name!r} is defined twice ({_chapter.__name__})")
        RECIPES[_name] = _recipe
        _EXTRA_MODULES[_name] = getattr(_chapter, "TRAINING_MODULES", ())


def recipe_key(name: str, recipe: Recipe, settings: dict) -> str:
    """SHA-256 of the recipe (the source of its ``build``, its ``train`` and the zoo helpers
    ``build`` and ``train`` call, its settings), the source of :data:`TRAINING_MODULES` and of its
    chapter's extra training modules, and torch's version. A recipe that starts from another model's
    weights (``settings["init"] = [name, profile]``, see :func:`initial_weights`) also hashes
    that model's key, so retraining the parent retrains the child."""
    modules = (*TRAINING_MODULES, *_EXTRA_MODULES.get(name, ()))
    content = {
        "name": name,
        "build": inspect.getsource(recipe.build),
        "train": [inspect.getsource(f) for f in (recipe.train, *_helpers(recipe.train))],
        "settings": settings,
        "modules": {m.__name__: inspect.getsource(m) for m in modules},
        "torch": torch.__version__,
    }
    builders = _helpers(recipe.build)  # e.g. lipschitz_nets.sn_cnn: its body shapes the model
    if builders:
        content["builders"] = [inspect.getsource(f) for f in builders]
    if "init" in settings:
        p_name, p_profile = settings["init"]
        check_choice(p_name, 'settings["init"][0]', RECIPES)
        p_recipe = RECIPES[p_name]
        content["parent"] = recipe_key(p_name, p_recipe, p_recipe.settings[p_profile])
    blob = json.dumps(content, sort_keys=True)
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
    with _exclusive(path):  # two kernels asking for the same model: one trains, one waits
        state = _read_cached(path, key)
        if state is not None:
            try:
                model.load_state_dict(state)
            except RuntimeError as err:  # same key but another architecture: treat as stale
                warnings.warn(
                    f"zoo: cached {path.name} does not fit the model ({err}); retraining",
                    stacklevel=2,
                )
                state = None
        if state is None:
            model.to(device)
            with config.isolated_rng(seed):
                recipe.train(model, settings)
            _write_atomic(path, {"key": key, "state_dict": model.state_dict()})
    return model.to(device).eval()


def initial_weights(model: nn.Module, settings: dict) -> None:
    """Copy the weights of the model named by ``settings["init"] = [name, profile]`` into
    ``model`` (same architecture): fine-tuning recipes start from a trained model."""
    p_name, p_profile = settings["init"]
    parent = load(p_name, profile=p_profile, device=next(model.parameters()).device)
    model.load_state_dict(parent.state_dict())


def is_cached(name: str, profile: str | None = None) -> bool:
    """Whether ``load(name)`` would load from the cache (a file with the current key) rather than
    train."""
    check_choice(name, "name", RECIPES)
    profile = config.profile() if profile is None else profile
    check_choice(profile, "profile", config.PROFILES)
    recipe = RECIPES[name]
    path = cache_path(name, profile)
    if not path.exists():
        return False
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # corrupt: load() would retrain
        return False
    return isinstance(payload, dict) and payload.get("key") == recipe_key(
        name, recipe, recipe.settings[profile]
    )


@contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on ``<path>.lock`` (POSIX ``flock``; a no-op where it is missing),
    so that notebooks run side by side train a shared model once."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, at worst a model trains twice
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
