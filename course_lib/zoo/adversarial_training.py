"""Recipes of chapter 3 (adversarial training).

The toy, single-step, FAT and CAT recipes train through
``course_lib.defenses.adversarial_training``, ``.fat`` and ``.cat``: those modules are this
module's ``TRAINING_MODULES`` (in the cache key). FAT, CAT and LAS-AT on MNIST are in
:mod:`.at_methods`.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import TensorLoader, load_mnist, load_toy2d
from ..defenses import adversarial_training, cat, fat
from ..models import mlp, small_cnn
from ..train import cross_entropy_loss, pgd_at_loss, train_epoch
from .trainers import Recipe

TRAINING_MODULES = (adversarial_training, cat, fat)


def _train_mnist_pgd_at(model: nn.Module, s: dict) -> None:
    """Madry et al. (2018) PGD-AT with a linear epsilon ramp over the first ``ramp`` epochs (in an
    unreported pilot, eps = 0.3 from the first epoch left this small CNN near chance on MNIST)."""
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


# ----- snapshots: one cached module holding the model after chosen epochs ----------------------


def _snapshot_list(build, count: int) -> nn.ModuleList:
    """``count`` copies of an architecture: the model after each recorded epoch."""
    return nn.ModuleList([build() for _ in range(count)])


def _train_moons_at_snapshots(snaps: nn.Module, s: dict) -> None:
    """PGD-AT (Madry) of a moons MLP at eps ``s["eps"]`` (0 = standard training), recording the
    model after the epochs in ``s["snapshots"]`` into ``snaps``."""
    x, y = load_toy2d("moons", n=s["n"], noise=s["noise"], seed=0)
    dev = next(snaps.parameters()).device
    model = mlp(2, (64, 64), 2).to(dev)
    loader = TensorLoader(x.to(dev), y.to(dev), batch_size=64, seed=s["seed"])
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    loss = pgd_at_loss(s["eps"], steps=s["steps"]) if s["eps"] > 0 else cross_entropy_loss
    for epoch in tqdm(range(s["snapshots"][-1] + 1), desc=s["desc"], leave=False):
        if epoch in s["snapshots"]:
            snaps[s["snapshots"].index(epoch)].load_state_dict(model.state_dict())
        if epoch < s["snapshots"][-1]:
            train_epoch(model, loader, loss, optimizer)


def _train_moons_general_at(model: nn.Module, s: dict) -> None:
    """The lecture's general AT algorithm on the moons (see :func:`general_at`)."""
    from ..defenses.adversarial_training import general_at, pgd_attack

    x, y = load_toy2d("moons", n=s["n"], noise=s["noise"], seed=0)
    dev = next(model.parameters()).device
    general_at(
        model,
        x.to(dev),
        y.to(dev),
        pgd_attack(s["eps"], steps=s["steps"]),
        s["rounds"],
        epochs_per_round=s["epochs_per_round"],
        subset=s["subset"],
        optimizer=torch.optim.Adam(model.parameters(), lr=s["lr"]),
    )


def _train_mnist_single_step(snaps: nn.Module, s: dict) -> None:
    """FGSM-AT (``random_init`` False) or Wong et al.'s FGSM-RS fast AT, with the eps ramp of
    ``mnist_pgd_at``, recording the model after every epoch."""
    from ..defenses.adversarial_training import fgsm_at_loss

    x, y, _, _ = load_mnist(s["data"])
    dev = next(snaps.parameters()).device
    model = small_cnn(1, 10, 28).to(dev)
    loader = TensorLoader(x.to(dev), y.to(dev), batch_size=s["batch"], seed=s["seed"])
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    for epoch in tqdm(range(s["epochs"]), desc=s["desc"], leave=False):
        eps = s["eps"] * min(1.0, (epoch + 1) / s["ramp"])
        loss = fgsm_at_loss(eps, alpha=s["alpha_over_eps"] * eps, random_init=s["random_init"])
        train_epoch(model, loader, loss, optimizer)
        snaps[epoch].load_state_dict(model.state_dict())


# epochs after which the moons snapshots are taken (0 = the untrained model)
MOONS_SNAPSHOTS = [0, 1, 2, 3, 5, 8, 12, 18, 25, 35, 50]
MOONS_AT_EPS = {"moons_at_e0": 0.0, "moons_at_e03": 0.03, "moons_at_e10": 0.10}
SINGLE_STEP = {  # name: (random_init, alpha / eps)
    "mnist_fgsm_at": (False, 1.0),
    "mnist_fgsm_rs_at": (True, 1.25),
}

for _name, _eps in MOONS_AT_EPS.items():
    RECIPES[_name] = Recipe(
        build=lambda: _snapshot_list(lambda: mlp(2, (64, 64), 2), len(MOONS_SNAPSHOTS)),
        train=_train_moons_at_snapshots,
        settings={
            p: {
                "n": n,
                "noise": 0.15,
                "eps": _eps,
                "steps": 10,
                "lr": 1e-2,
                "seed": 0,
                "snapshots": MOONS_SNAPSHOTS,
                "desc": _name,
            }
            for p, n in (("quick", 400), ("full", 2000))
        },
    )

RECIPES["moons_general_at"] = Recipe(
    build=lambda: mlp(2, (64, 64), 2),
    train=_train_moons_general_at,
    settings={
        p: {
            "n": n,
            "noise": 0.15,
            "eps": 0.03,
            "steps": 10,
            "lr": 1e-2,
            "seed": 0,
            "rounds": 10,
            "epochs_per_round": 5,
            "subset": 0.5,
        }
        for p, n in (("quick", 400), ("full", 2000))
    },
)

for _name, (_init, _ratio) in SINGLE_STEP.items():
    RECIPES[_name] = Recipe(
        build=lambda: _snapshot_list(lambda: small_cnn(1, 10, 28), 12),
        train=_train_mnist_single_step,
        settings={
            p: {
                "data": p,
                "eps": 0.3,
                "epochs": 12,
                "ramp": 4,
                "lr": 1e-3,
                "batch": 64,
                "random_init": _init,
                "alpha_over_eps": _ratio,
                "seed": 0,
                "desc": _name,
            }
            for p in ("quick", "full")
        },
    )


def _train_moons_fat(model: nn.Module, s: dict) -> None:
    """FAT on the moons: PGD-K-tau examples with the dynamic tau of the reference."""
    from ..defenses.fat import fat_loss, fat_tau

    x, y = load_toy2d("moons", n=s["n"], noise=s["noise"], seed=0)
    dev = next(model.parameters()).device
    loader = TensorLoader(x.to(dev), y.to(dev), batch_size=64, seed=s["seed"])
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    for epoch in tqdm(range(s["epochs"]), desc=s["desc"], leave=False):
        loss = fat_loss(s["eps"], steps=s["steps"], tau=fat_tau(epoch, s["epochs"]))
        train_epoch(model, loader, loss, optimizer)


def _train_moons_cat(model: nn.Module, s: dict) -> None:
    """CAT on the moons; the final per-sample budgets are kept in the buffer ``cat_eps``."""
    from ..defenses.cat import CustomizedAT

    x, y = load_toy2d("moons", n=s["n"], noise=s["noise"], seed=0)
    dev = next(model.parameters()).device
    x, y = x.to(dev), y.to(dev)
    loader = TensorLoader(x, torch.arange(len(y), device=dev), batch_size=64, seed=s["seed"])
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    cat = CustomizedAT(y, s["eps_max"], s["eta"], s["c"], steps=s["steps"])
    for _ in tqdm(range(s["epochs"]), desc=s["desc"], leave=False):
        train_epoch(model, loader, cat, optimizer)
    model.cat_eps.copy_(cat.eps)


def _moons_with_budgets(n: int) -> nn.Module:
    model = mlp(2, (64, 64), 2)
    model.register_buffer("cat_eps", torch.zeros(n))  # CAT's final eps_i per training point
    return model


_MOONS = {"noise": 0.15, "lr": 1e-2, "seed": 0, "steps": 10, "epochs": 50}
RECIPES["moons_fat"] = Recipe(
    build=lambda: mlp(2, (64, 64), 2),
    train=_train_moons_fat,
    settings={
        p: {**_MOONS, "n": n, "eps": 0.10, "desc": "moons_fat"}
        for p, n in (("quick", 400), ("full", 2000))
    },
)
RECIPES["moons_cat"] = Recipe(
    build=lambda: _moons_with_budgets(400),
    train=_train_moons_cat,
    settings={
        p: {**_MOONS, "n": 400, "eps_max": 0.10, "eta": 0.005, "c": 5.0, "desc": "moons_cat"}
        for p in ("quick", "full")
    },
)
