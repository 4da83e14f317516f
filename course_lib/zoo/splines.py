r"""Recipes of chapter 5's learnable-spline notebook (Ducotterd et al., 2024): 1-Lipschitz
Björck networks whose activations are :class:`~course_lib.lipschitz.splines.LinearSpline`,
next to GroupSort and ReLU twins trained the same way.

* ``fit1d_<target>_<activation>``: 1–32–32–32–1 nets fitting :math:`|x|` or a sawtooth on
  :math:`[-1, 1]` by least squares (:math:`|x|` uses the settings of chapter 5.6's
  ``abs_bjorck_*`` recipes, which the notebook loads for GroupSort and ReLU);
* ``fit1d_grid_k<knots>_tv<lambda>``: small 1–8–8–1 spline nets on the sawtooth, one per knot
  count and TV(2) weight, for the notebook's widget;
* ``moons_bjorck_spline_tau_20``: 2–64–64–64–2 with splines, τ-CE τ = 20, the settings of
  ``moons_bjorck_tau_20`` (GroupSort) and ``moons_bjorck_relu_tau_20`` (ReLU) in
  :mod:`.lipschitz_nets`.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import config
from ..data import TensorLoader
from ..lipschitz import constrained, losses, splines
from ..lipschitz.constrained import GroupSort, bjorck_linear
from ..lipschitz.losses import tau_cross_entropy
from ..lipschitz.splines import LinearSpline, total_tv2
from ..train import fit
from ..validate import check_choice
from .trainers import Recipe, train_moons

TRAINING_MODULES = (constrained, losses, splines)

SPLINE_KNOTS = (5, 11, 21, 41)  # knot counts of the widget grid (range [-1, 1])
SPLINE_TV = (0.0, 1e-5, 1e-4, 1e-3)  # TV(2) weights of the widget grid
TOY_TV = 1e-4  # TV(2) weight of the moons spline net
FIT_TV = 0.0  # the 1-D comparison fits by plain least squares, like abs_bjorck_*


def sawtooth(x: torch.Tensor, period: float = 0.5) -> torch.Tensor:
    r"""Triangle wave :math:`|x - p\,\mathrm{round}(x/p)|`: slopes :math:`\pm 1`, amplitude
    :math:`p/2`, so it is 1-Lipschitz and needs a kink every :math:`p/2`."""
    return (x - period * torch.round(x / period)).abs()


TARGETS = {"abs": torch.abs, "sawtooth": sawtooth}


def bjorck_spline_mlp(
    in_dim: int,
    hidden: tuple[int, ...],
    out_dim: int,
    activation: str = "spline",
    knots: int = 21,
    range_: float = 1.0,
) -> nn.Sequential:
    """Björck-orthonormal linear layers with a per-channel :class:`LinearSpline` (ReLU init),
    GroupSort-2 or ReLU in between: 1-Lipschitz in every case."""
    check_choice(activation, "activation", ("spline", "groupsort", "relu"))
    layers: list[nn.Module] = [nn.Flatten()]
    widths = [in_dim, *hidden]
    for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
        if activation == "spline":
            act: nn.Module = LinearSpline(w_out, knots, range_, "relu")
        else:
            act = GroupSort(2) if activation == "groupsort" else nn.ReLU()
        layers += [bjorck_linear(w_in, w_out), act]
    layers.append(bjorck_linear(widths[-1], out_dim))
    return nn.Sequential(*layers)


def _train_fit1d(model: nn.Module, s: dict) -> None:
    """Least squares on ``s["n"]`` points of [-1, 1] plus ``s["tv"]`` × TV(2) of the splines."""
    x = torch.linspace(-1, 1, s["n"]).view(-1, 1)  # (n, 1)
    dev = next(model.parameters()).device
    loader = TensorLoader(x.to(dev), TARGETS[s["target"]](x).to(dev), batch_size=64, seed=s["seed"])

    def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        mse = torch.nn.functional.mse_loss(m(xb), yb)
        return mse + s["tv"] * total_tv2(m).to(mse) if s["tv"] else mse

    fit(model, loader, loss, epochs=s["epochs"], lr=s["lr"], desc=s["desc"])


def _train_moons_spline(model: nn.Module, s: dict) -> None:
    """τ-CE (Béthune et al., 2022) plus ``s["tv"]`` × TV(2) on the moons toy."""

    def loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return tau_cross_entropy(m(x), y, s["tau"]) + s["tv"] * total_tv2(m)

    train_moons(model, s, loss)


def _fit1d(target: str, activation: str) -> Recipe:
    # |x|: the settings of lipschitz_nets' abs_bjorck_* (n 256, 100 epochs, lr 1e-2, batch 64)
    s = {"n": 256, "epochs": 100, "lr": 1e-2, "seed": 0, "target": target}
    s |= {"tv": FIT_TV if activation == "spline" else 0.0, "desc": f"{target} {activation}"}
    return Recipe(
        build=lambda: bjorck_spline_mlp(1, (32, 32, 32), 1, activation, knots=21),
        train=_train_fit1d,
        settings={p: dict(s) for p in config.PROFILES},
    )


def _grid(knots: int, tv: float) -> Recipe:
    s = {"n": 256, "epochs": 60, "lr": 1e-2, "seed": 0, "target": "sawtooth", "tv": tv}
    return Recipe(
        build=lambda: bjorck_spline_mlp(1, (8, 8), 1, "spline", knots=knots),
        train=_train_fit1d,
        settings={p: {**s, "desc": f"spline K={knots} tv={tv:g}"} for p in config.PROFILES},
    )


def _toy_spline() -> nn.Sequential:
    return bjorck_spline_mlp(2, (64, 64, 64), 2, "spline", knots=21, range_=2.0)


RECIPES: dict[str, Recipe] = (
    {"fit1d_abs_spline": _fit1d("abs", "spline")}
    | {f"fit1d_sawtooth_{a}": _fit1d("sawtooth", a) for a in ("spline", "groupsort", "relu")}
    | {f"fit1d_grid_k{k}_tv{t:g}": _grid(k, t) for k in SPLINE_KNOTS for t in SPLINE_TV}
    | {
        "moons_bjorck_spline_tau_20": Recipe(
            build=_toy_spline,
            train=_train_moons_spline,
            settings={
                p: {"n": 400, "noise": 0.15, "epochs": 60, "lr": 1e-2, "seed": 0}
                | {"tau": 20.0, "tv": TOY_TV, "desc": "moons spline tau=20"}
                for p in config.PROFILES
            },
        )
    }
)
