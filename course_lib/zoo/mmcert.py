r"""Recipe of chapter 5 part 3, MMCert (Wang, Fu, Zou & Jia, CVPR 2024): a two-modality MNIST
classifier trained on independently sub-sampled modalities, ``zoo.load("mnist_mmcert")``.

**A teaching stand-in for RGB + depth.** MMCert's experiments fuse an RGB image with a depth
image (KITTI Road) or video with audio (RAVDESS). We build two modalities from each MNIST digit:
modality 1 is the digit down-sampled to 14×14 (196 features), modality 2 its edge map (the
finite-difference gradient magnitude of that 14×14 digit, 196 features). The edge map is computed
once from the clean digit; afterwards the two views are separate inputs that an attacker changes
independently, like two sensors.

Training: cross-entropy on ablated inputs (:func:`course_lib.certify.mmcert.ablate`). Each row
keeps :math:`k_i` features per modality, with :math:`k_i` drawn per row from
:data:`KEPT_COUNTS`, so one model serves every kept count of the notebook's widget (MMCert, like
randomized ablation, trains one model per :math:`k`: a deviation that saves training time).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import config
from ..certify import mmcert
from ..data import TensorLoader, load_mnist
from ..models import mlp
from ..train import fit
from .trainers import Recipe

TRAINING_MODULES = (mmcert,)

SIDE = 14  # the 14x14 grid of both modalities
N_FEATURES = (SIDE * SIDE, SIDE * SIDE)  # n_1, n_2
KEPT_COUNTS = (20, 40, 80)  # k_i the model is trained (and the widget certifies) with


def two_views(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST digits ``(B, 1, 28, 28)`` → (down-sampled digit ``(B, 196)``, edge map ``(B, 196)``),
    both in [0, 1]. Edges: :math:`\\sqrt{(\\partial_x u)^2 + (\\partial_y u)^2}/\\sqrt2` with
    forward differences (zero past the border) on the 14×14 digit :math:`u`."""
    u = F.avg_pool2d(x, 2)  # (B, 1, 14, 14)
    dx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1))  # (B, 1, 14, 14)
    dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))  # (B, 1, 14, 14)
    edges = (dx.square() + dy.square()).sqrt() / 2**0.5  # in [0, 1]
    return u.flatten(1), edges.flatten(1)


def subsampling_loss(kept_counts=KEPT_COUNTS):
    """``loss_fn(model, x, y)`` for :func:`course_lib.train.fit`: ``x`` is ``(B, 392)`` (the two
    views side by side); every row keeps a random :math:`k_i \\in` ``kept_counts`` features per
    modality."""
    choices = torch.tensor(kept_counts)

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xs = x.split(N_FEATURES, dim=1)  # two (B, 196)
        masks = []
        for n_i in N_FEATURES:
            k_rows = choices[torch.randint(len(choices), (x.shape[0],))].to(x.device)  # (B,)
            masks.append(mmcert.subsample_masks(x.shape[0], n_i, k_rows, device=x.device))
        return F.cross_entropy(model(mmcert.ablate(xs, masks)), y)

    return loss_fn


def build_mmcert_mlp() -> nn.Sequential:
    """MLP on the ablated input: 2 × (196 values + 196 masks) = 784 → 256 → 256 → 10."""
    return mlp(2 * sum(N_FEATURES), (256, 256), 10)


def _train_mmcert(model: nn.Module, s: dict) -> None:
    x_train, y_train, _, _ = load_mnist(s["data"])
    dev = next(model.parameters()).device
    x = torch.cat(two_views(x_train), dim=1).to(dev)  # (N, 392)
    loader = TensorLoader(x, y_train.to(dev), batch_size=64, seed=s["seed"])
    fit(model, loader, subsampling_loss(), epochs=s["epochs"], lr=s["lr"], desc=s["desc"])


RECIPES: dict[str, Recipe] = {
    "mnist_mmcert": Recipe(
        build=build_mmcert_mlp,
        train=_train_mmcert,
        settings={
            p: {"data": p, "epochs": 30 if p == "quick" else 10, "lr": 1e-3, "seed": 0}
            | {"desc": "MMCert sub-sampling"}
            for p in config.PROFILES
        },
    )
}
