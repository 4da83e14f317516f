"""Recipes of chapter 5 part 2 (Lipschitz-constrained networks): spectrally normalised MLPs at
several Lipschitz targets, and Björck + GroupSort networks trained with hKR or τ-CE, on the
two-moons toy and on MNIST. Names carry the setting: ``zoo.load("moons_sn_4")``.

None of these nets has a :class:`~course_lib.models.Normalize` first layer: its :math:`1/s` would
multiply every Lipschitz bound (3.2 on MNIST); pixels in [0, 1] go in unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import config
from ..data import TensorLoader
from ..lipschitz import constrained, conv_bounds, gram_conv, layer_norms, losses
from ..lipschitz.constrained import GroupSort, bjorck_conv2d, bjorck_linear, spectral_normalize
from ..lipschitz.losses import hkr_loss_fn, tau_cross_entropy_fn
from ..models import mlp
from ..train import fit
from ..validate import check_choice
from .trainers import Recipe, train_mnist, train_moons

TRAINING_MODULES = (constrained, layer_norms, gram_conv, losses, conv_bounds)

SN_TOY_TARGETS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)  # Lipschitz targets L_hat on the toy
SN_MNIST_TARGETS = (1.0, 4.0, 16.0)
HKR_TOY_MARGINS = (0.02, 0.05, 0.1, 0.2)  # hKR margins m on the toy (alpha = 0.98)
TAU_TOY = (1.0, 5.0, 20.0, 100.0)  # temperatures of tau-CE on the toy
TAU_MNIST = (1.0, 4.0, 16.0, 64.0)  # temperatures of tau-CE on MNIST-5k
HKR_MNIST_MARGINS = (0.5, 1.0, 2.0)  # hKR margins m on MNIST-5k (alpha = 0.98)
HKR_ALPHA = 0.98  # deel-torchlip's convention: 0.98 hinge + 0.02 KR (deel-lip's alpha = 49)
SN_CNN_TARGETS = (1.0, 4.0)  # Lipschitz targets of the spectrally normalised MNIST CNNs
TAU_CNN = 4.0  # temperature of the Björck + GroupSort CNN (as the MLP's)
MNIST_SHAPE = (1, 28, 28)  # input_shape of the CNNs' bounds


def sn_mlp(in_dim: int, hidden: tuple[int, ...], num_classes: int, L_hat: float) -> nn.Sequential:
    """A ReLU MLP (:func:`course_lib.models.mlp`) spectrally normalised to the target ``L_hat``."""
    return spectral_normalize(mlp(in_dim, hidden, num_classes), L_hat)


def bjorck_mlp(
    in_dim: int, hidden: tuple[int, ...], num_classes: int, activation: str = "groupsort"
) -> nn.Sequential:
    """Björck-orthonormal linear layers with GroupSort-2 (or ReLU) in between: 1-Lipschitz."""
    check_choice(activation, "activation", ("groupsort", "relu"))
    layers: list[nn.Module] = [nn.Flatten()]
    widths = [in_dim, *hidden]
    for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
        act = GroupSort(2) if activation == "groupsort" else nn.ReLU()
        layers += [bjorck_linear(w_in, w_out), act]
    layers.append(bjorck_linear(widths[-1], num_classes))
    return nn.Sequential(*layers)


def lip_cnn() -> nn.Sequential:
    """:func:`course_lib.models.small_cnn` without its ``Normalize`` (whose :math:`1/s` would
    multiply every bound): two strided 5x5 convolutions (28 -> 14 -> 7) and two dense layers."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, stride=2, padding=2),  # (B, 16, 14, 14)
        nn.ReLU(),
        nn.Conv2d(16, 32, 5, stride=2, padding=2),  # (B, 32, 7, 7)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def sn_cnn(L_hat: float) -> nn.Sequential:
    """:func:`lip_cnn` spectrally normalised to ``L_hat`` on 28x28 inputs. The convolutions are
    trained with Gram iteration on their polyphase FFT blocks, an upper bound within ~1e-5 of the
    guaranteed bound they are divided by at inference, so the trained and the certified nets agree.
    (One power-iteration step on the real operator is ~5x cheaper on a CPU but trains against a
    different, smaller norm: in our quick-profile run at L_hat = 1 it certified 0.46 of the test
    digits at r = 0.5 instead of 0.68.)"""
    return spectral_normalize(lip_cnn(), L_hat, "gram", input_shape=MNIST_SHAPE)


def bjorck_cnn() -> nn.Sequential:
    """Björck convolutions (4x4, stride 2: 28 -> 14 -> 7) and Björck dense layers with GroupSort-2
    in between: every layer is 1-Lipschitz by construction."""
    return nn.Sequential(
        bjorck_conv2d(1, 16, 4, stride=2, padding=1),  # (B, 16, 14, 14)
        GroupSort(2),
        bjorck_conv2d(16, 32, 4, stride=2, padding=1),  # (B, 32, 7, 7)
        GroupSort(2),
        nn.Flatten(),
        bjorck_linear(32 * 7 * 7, 128),
        GroupSort(2),
        bjorck_linear(128, 10),
    )


def _loss(s: dict):
    """The training loss named by ``s["loss"]``: cross-entropy, hKR or τ-CE."""
    check_choice(s["loss"], 's["loss"]', ("ce", "hkr", "tau"))
    if s["loss"] == "hkr":
        return hkr_loss_fn(HKR_ALPHA, s["margin"])
    if s["loss"] == "tau":
        return tau_cross_entropy_fn(s["tau"])
    return None


def _train_moons_lip(model: nn.Module, s: dict) -> None:
    loss_fn = _loss(s)
    train_moons(model, s) if loss_fn is None else train_moons(model, s, loss_fn)


def _train_mnist_lip(model: nn.Module, s: dict) -> None:
    loss_fn = _loss(s)
    train_mnist(model, s) if loss_fn is None else train_mnist(model, s, loss_fn)


def _train_abs(model: nn.Module, s: dict) -> None:
    """Fit :math:`|x|` on [-1, 1] by least squares (Anil et al., 2019's expressivity example)."""
    x = torch.linspace(-1, 1, s["n"]).view(-1, 1)  # (n, 1)
    dev = next(model.parameters()).device
    loader = TensorLoader(x.to(dev), x.abs().to(dev), batch_size=64, seed=s["seed"])
    mse = lambda m, xb, yb: torch.nn.functional.mse_loss(m(xb), yb)  # noqa: E731
    fit(model, loader, mse, epochs=s["epochs"], lr=s["lr"], desc=s["desc"])


def _toy(build, desc: str, **setting) -> Recipe:
    base = {"n": 400, "noise": 0.15, "epochs": 60, "lr": 1e-2, "seed": 0, "loss": "ce"}
    return Recipe(
        build=build,
        train=_train_moons_lip,
        settings={p: {**base, "desc": desc, **setting} for p in config.PROFILES},
    )


def _digits(build, desc: str, **setting) -> Recipe:
    base = {"epochs": 10, "lr": 1e-3, "seed": 0, "loss": "ce", "desc": desc}
    if setting.pop("cnn", False):  # chapter 5.2's CNNs: epochs per profile from config.SETTINGS
        return Recipe(
            build=build,
            train=_train_mnist_lip,
            settings={
                p: {**base, "epochs": config.SETTINGS[p]["lip_cnn_epochs"], "data": p, **setting}
                for p in config.PROFILES
            },
        )
    return Recipe(
        build=build,
        train=_train_mnist_lip,
        settings={p: {**base, "data": p, **setting} for p in config.PROFILES},
    )


def _toy_sn(L: float):
    return lambda: sn_mlp(2, (64, 64), 2, L)


def _digits_sn(L: float):
    return lambda: sn_mlp(784, (128, 128), 10, L)


def _toy_bjorck(activation: str = "groupsort"):
    return lambda: bjorck_mlp(2, (64, 64, 64), 2, activation)


def _digits_bjorck():
    return bjorck_mlp(784, (128, 128), 10)


RECIPES: dict[str, Recipe] = (
    {f"moons_sn_{L:g}": _toy(_toy_sn(L), f"moons SN L={L:g}") for L in SN_TOY_TARGETS}
    | {f"mnist_sn_{L:g}": _digits(_digits_sn(L), f"mnist SN L={L:g}") for L in SN_MNIST_TARGETS}
    | {
        f"moons_bjorck_hkr_{m:g}": _toy(_toy_bjorck(), f"moons hKR m={m:g}", loss="hkr", margin=m)
        for m in HKR_TOY_MARGINS
    }
    | {
        f"moons_bjorck_tau_{t:g}": _toy(_toy_bjorck(), f"moons tau={t:g}", loss="tau", tau=t)
        for t in TAU_TOY
    }
    | {
        "moons_bjorck_relu_tau_20": _toy(
            _toy_bjorck("relu"), "moons ReLU tau=20", loss="tau", tau=20.0
        )
    }
    | {
        f"abs_bjorck_{act}": Recipe(
            build=(lambda a=act: bjorck_mlp(1, (32, 32, 32), 1, a)),
            train=_train_abs,
            settings={
                p: {"n": 256, "epochs": 100, "lr": 1e-2, "seed": 0, "desc": f"|x| {act}"}
                for p in config.PROFILES
            },
        )
        for act in ("groupsort", "relu")
    }
    | {
        f"mnist_bjorck_tau_{t:g}": _digits(_digits_bjorck, f"mnist tau={t:g}", loss="tau", tau=t)
        for t in TAU_MNIST
    }
    | {
        f"mnist_bjorck_hkr_{m:g}": _digits(
            _digits_bjorck, f"mnist hKR m={m:g}", loss="hkr", margin=m
        )
        for m in HKR_MNIST_MARGINS
    }
    | {"mnist_lip_cnn": _digits(lip_cnn, "mnist CNN (no Normalize)", cnn=True)}
    | {
        f"mnist_sn_cnn_{L:g}": _digits(lambda L=L: sn_cnn(L), f"mnist SN CNN L={L:g}", cnn=True)
        for L in SN_CNN_TARGETS
    }
    | {
        f"mnist_bjorck_cnn_tau_{TAU_CNN:g}": _digits(
            bjorck_cnn, f"mnist Björck CNN tau={TAU_CNN:g}", cnn=True, loss="tau", tau=TAU_CNN
        )
    }
)
