"""Recipes of chapter 3 (notebooks 3.3 and 3.5): FAT, CAT and LAS-AT on MNIST, at the budget of
``mnist_pgd_at`` (the primer's CNN, data, epochs, epsilon ramp and Adam), each keeping the
per-epoch record its notebook plots (CAT's budget histogram, LAS-AT's strategy shares) as buffers.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import TensorLoader, load_mnist
from ..defenses import cat, fat, las_at
from ..models import small_cnn
from ..train import train_epoch
from .trainers import Recipe

TRAINING_MODULES = (cat, fat, las_at)

RECIPES: dict[str, Recipe] = {}

# ----- MNIST FAT, CAT and LAS-AT: the budget of mnist_pgd_at (CNN, data, epochs, ramp, Adam) ----

MNIST_AT_EPOCHS = {"quick": 20, "full": 40}  # as mnist_pgd_at
HISTORY_ROWS = max(MNIST_AT_EPOCHS.values())  # one row per epoch (rows past the last stay 0)
LAS_CHOICES = {  # MNIST's action table (the reference's CIFAR-10 one: see las_at's docstring)
    "eps": [0.15, 0.2, 0.25, 0.3, 0.35, 0.4],
    "steps": [3, 5, 7, 10],
    "alpha": [0.01, 0.025, 0.05, 0.075, 0.1],
}
CAT_BINS = 16  # eps_i takes the values k * eta, k = 0..15 (eta = 0.02, eps_max = 0.3)


def _cnn_with_history(kind: str) -> nn.Module:
    """The primer's CNN plus buffers for what the notebooks plot, one row per epoch: CAT's
    histogram of the training digits' eps_i (``cat_hist``, counts of eps_i = k * eta); LAS-AT's
    share of each choice (``las_eps``, ``las_steps``, ``las_alpha``) and mean rewards
    (``las_reward``: weighted R1, R2, R3 and R)."""
    model = small_cnn(1, 10, 28)
    if kind == "cat":
        model.register_buffer("cat_hist", torch.zeros(HISTORY_ROWS, CAT_BINS))
    else:
        for head, values in LAS_CHOICES.items():
            model.register_buffer(f"las_{head}", torch.zeros(HISTORY_ROWS, len(values)))
        model.register_buffer("las_reward", torch.zeros(HISTORY_ROWS, 4))
    return model


def _mnist_loader(model: nn.Module, s: dict, indices: bool = False):
    """MNIST of the profile as a loader of (x, y), or of (x, index) with ``indices``; and y."""
    x, y, _, _ = load_mnist(s["data"])
    dev = next(model.parameters()).device
    x, y = x.to(dev), y.to(dev)
    target = torch.arange(len(y), device=dev) if indices else y
    return TensorLoader(x, target, batch_size=s["batch"], seed=s["seed"]), y


def _train_mnist_fat(model: nn.Module, s: dict) -> None:
    """FAT (PGD-K-tau with FAT's tau schedule) with the eps ramp of ``mnist_pgd_at``."""
    loader, _ = _mnist_loader(model, s)
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    for epoch in tqdm(range(s["epochs"]), desc=s["desc"], leave=False):
        eps = s["eps"] * min(1.0, (epoch + 1) / s["ramp"])
        tau = fat.fat_tau(epoch, s["epochs"])
        train_epoch(model, loader, fat.fat_loss(eps, steps=s["steps"], tau=tau), optimizer)


def _train_mnist_cat(model: nn.Module, s: dict) -> None:
    """CAT with per-digit budgets (no ramp: every eps_i grows from 0 by eta), recording the
    histogram of the eps_i after each epoch in ``model.cat_hist``."""
    loader, y = _mnist_loader(model, s, indices=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    loss = cat.CustomizedAT(y, s["eps_max"], s["eta"], s["c"], steps=s["steps"])
    for epoch in tqdm(range(s["epochs"]), desc=s["desc"], leave=False):
        train_epoch(model, loader, loss, optimizer)
        k = (loss.eps / s["eta"]).round().long()  # (n,) eps_i = k * eta
        model.cat_hist[epoch] = torch.bincount(k.cpu(), minlength=CAT_BINS).float()


def _train_mnist_las_at(model: nn.Module, s: dict) -> None:
    """LAS-AT with the eps ramp of ``mnist_pgd_at`` applied to the whole action table, recording
    the share of each choice and the mean rewards per epoch."""
    loader, _ = _mnist_loader(model, s)
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    loss = las_at.LearnableAttackStrategyAT(
        s["choices"],
        s["eps"],
        policy_every=s["policy_every"],
        policy_lr=s["policy_lr"],
        baseline_momentum=s["baseline_momentum"],
    )
    for epoch in tqdm(range(s["epochs"]), desc=s["desc"], leave=False):
        loss.scale = min(1.0, (epoch + 1) / s["ramp"])
        done = len(loss.rewards)
        train_epoch(model, loader, loss, optimizer)
        for head, counts in loss.counts.items():
            getattr(model, f"las_{head}")[epoch] = counts / counts.sum()
            counts.zero_()
        model.las_reward[epoch] = torch.tensor(loss.rewards[done:]).mean(0)


_MNIST = {"eps": 0.3, "lr": 1e-3, "batch": 64, "seed": 0, "ramp": 8}
RECIPES["mnist_fat"] = Recipe(
    build=lambda: small_cnn(1, 10, 28),
    train=_train_mnist_fat,
    settings={
        p: {**_MNIST, "data": p, "epochs": e, "steps": k, "desc": "mnist_fat"}
        for p, e, k in (("quick", 20, 10), ("full", 40, 40))
    },
)
RECIPES["mnist_cat"] = Recipe(
    build=lambda: _cnn_with_history("cat"),
    train=_train_mnist_cat,
    settings={
        p: {**_MNIST, "data": p, "epochs": e, "steps": k, "desc": "mnist_cat"}
        | {"eps_max": 0.3, "eta": 0.02, "c": 1.0}
        for p, e, k in (("quick", 20, 10), ("full", 40, 40))
    },
)
RECIPES["mnist_las_at"] = Recipe(
    build=lambda: _cnn_with_history("las"),
    train=_train_mnist_las_at,
    settings={
        p: {**_MNIST, "data": p, "epochs": e, "desc": "mnist_las_at"}
        | {"choices": LAS_CHOICES, "policy_every": 4, "policy_lr": 0.1, "baseline_momentum": 0.9}
        for p, e in (("quick", 20), ("full", 40))
    },
)
