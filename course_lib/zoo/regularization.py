"""Recipes of chapter 4 (regularization training): CURE, TRADES, TLA and consistency
regularization on MNIST, and a TRADES beta sweep on the two-moons toy.

The standard models are the primer's ``mnist_cnn`` / ``moons_mlp`` and the adversarially trained
MNIST model is chapter 3's ``mnist_pgd_at``; every MNIST model here has the same architecture,
data, optimizer and batch size. CURE and TRADES train from scratch with the same linear epsilon
ramp as ``mnist_pgd_at`` (at eps = 0.3 from the first epoch this small CNN collapses to chance).
TLA and consistency regularization **fine-tune** ``mnist_pgd_at`` for a few epochs at eps = 0.3
(a deviation from the papers, which train from scratch), next to their lambda = 0 controls
trained the same way: ``mnist_pgd_at_ft`` (PGD-AT continued, the control of TLA's triplet and
norm terms), ``mnist_tla_lam0`` (TLA without the norm penalty) and ``mnist_consistency_lam0``
(the two attacked augmentations without the JS term)."""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import TensorLoader, load_mnist
from ..defenses import consistency, regularizers, tla, trades
from ..models import mlp, small_cnn
from ..train import pgd_at_loss, train_epoch
from .trainers import Recipe, train_moons

TRAINING_MODULES = (regularizers, trades, tla, consistency)

TRADES_TOY_BETAS = (0.0, 0.5, 2.0, 8.0)  # beta = 0 is plain training with TRADES' pipeline
TRADES_TOY_EPS = 0.06  # l_inf, in the toy's unit square
CURE_H = (0.1, 0.4, 0.8, 1.8, 3.0)  # the reference's h schedule (here in pixel units, l2)


def _epoch_loss(s: dict, epoch: int):
    """The loss of epoch ``epoch`` for the method ``s["loss"]``: attacks ramp eps linearly over
    ``s["ramp"]`` epochs, CURE follows its h schedule."""
    if s["loss"] == "cure":
        return regularizers.cure_loss(s["lam"], CURE_H[min(epoch, len(CURE_H) - 1)])
    eps = s["eps"] * min(1.0, (epoch + 1) / s["ramp"])
    if s["loss"] == "trades":
        return trades.trades_loss(s["beta"], eps, steps=s["steps"])
    if s["loss"] == "tla":
        return tla.tla_loss(eps, s["steps"], s["weight"], s["margin"], s["lam"])
    if s["loss"] == "pgd_at":
        return pgd_at_loss(eps, steps=s["steps"])
    return consistency.consistency_loss(eps, s["steps"], s["lam"], s["tau"])


def _train_mnist_regularized(model: nn.Module, s: dict) -> None:
    x, y, _, _ = load_mnist(s["data"])
    dev = next(model.parameters()).device
    if "init" in s:  # fine-tuning: start from the trained model s["init"]
        from . import initial_weights

        initial_weights(model, s)
    loader = TensorLoader(x.to(dev), y.to(dev), batch_size=64, seed=s["seed"])
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    for epoch in tqdm(range(s["epochs"]), desc=s["desc"], leave=False):
        train_epoch(model, loader, _epoch_loss(s, epoch), optimizer)


def _train_moons_trades(model: nn.Module, s: dict) -> None:
    train_moons(model, s, trades.trades_loss(s["beta"], s["eps"], steps=s["steps"]))


def _mnist(loss: str, quick_epochs: int, full_epochs: int, **setting) -> Recipe:
    """The small MNIST CNN trained with ``loss``; quick: PGD-10 inner attacks, full: PGD-40."""
    base = {"loss": loss, "lr": 1e-3, "seed": 0, "desc": f"mnist_{loss}", "ramp": 8, **setting}
    return Recipe(
        build=lambda: small_cnn(1, 10, 28),
        train=_train_mnist_regularized,
        settings={
            "quick": {**base, "data": "quick", "epochs": quick_epochs, "steps": 10},
            "full": {**base, "data": "full", "epochs": full_epochs, "steps": 40},
        },
    )


def _fine_tuned(loss: str, quick_epochs: int, full_epochs: int, **setting) -> Recipe:
    """``loss`` for a few epochs at the full eps, starting from ``mnist_pgd_at`` of the same
    profile: the method's effect and its lambda = 0 control from the same starting point, within
    the quick profile's time budget."""
    recipe = _mnist(loss, quick_epochs, full_epochs, ramp=1, **setting)
    for profile, s in recipe.settings.items():
        s["init"] = ["mnist_pgd_at", profile]
    return recipe


FINE_TUNE_EPOCHS = {"quick": 3, "full": 10}  # epochs of the fine-tuned models of notebook 4.3
_FT = (FINE_TUNE_EPOCHS["quick"], FINE_TUNE_EPOCHS["full"])

RECIPES: dict[str, Recipe] = {
    "mnist_cure": _mnist("cure", 10, 20, lam=4.0),
    "mnist_trades": _mnist("trades", 20, 40, eps=0.3, beta=6.0),
    # TLA and consistency fine-tune PGD-AT; each has its lambda = 0 control (same start, epochs)
    "mnist_tla": _fine_tuned("tla", *_FT, eps=0.3, weight=0.5, margin=0.05, lam=1e-4),
    "mnist_tla_lam0": _fine_tuned("tla", *_FT, eps=0.3, weight=0.5, margin=0.05, lam=0.0),
    "mnist_pgd_at_ft": _fine_tuned("pgd_at", *_FT, eps=0.3),
    "mnist_consistency": _fine_tuned("consistency", *_FT, eps=0.3, lam=1.0, tau=0.5),
    "mnist_consistency_lam0": _fine_tuned("consistency", *_FT, eps=0.3, lam=0.0, tau=0.5),
}
RECIPES.update(
    {
        f"moons_trades_b{beta:g}": Recipe(
            build=lambda: mlp(2, (64, 64), 2),
            train=_train_moons_trades,
            settings={
                p: {
                    "n": n,
                    "noise": 0.15,
                    "epochs": 60,
                    "lr": 1e-2,
                    "seed": 0,
                    "desc": f"moons_trades_b{beta:g}",
                    "beta": beta,
                    "eps": TRADES_TOY_EPS,
                    "steps": 10,
                }
                for p, n in (("quick", 400), ("full", 2000))
            },
        )
        for beta in TRADES_TOY_BETAS
    }
)
