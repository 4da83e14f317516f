"""Recipes of chapter 2 (naive defenses).

``mnist_cnn_resize_pad``: the primer's small CNN for 32-pixel inputs, trained on digits passed
through Xie et al.'s random resize-and-pad (28 -> [28, 32), zero-padded to 32). Xie et al. keep a
pretrained ImageNet network (its global pooling accepts any size); our CNN has a fixed input
size, so it is trained on the transformed digits, as Guo et al. retrain for their transforms.

``mnist_keyed_{j}``, j = 0..5: the keyed classifiers of Taran et al.'s randomized diversification,
the small CNN behind a secret DCT sign-flip key on sub-band ``"d"``, ``"h"`` or ``"v"`` (in turn),
each key drawn from its own seed. The key is a buffer, saved with the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import config
from ..defenses import diversification, randomization, tv
from ..models import small_cnn
from .trainers import Recipe, train_mnist

TRAINING_MODULES = (diversification, randomization, tv)

RESIZE_PAD = (28, 32)  # (size, max_size) of the random resize-and-pad on MNIST


def _resize_pad_loss(model, x, y):
    """Cross-entropy on one random resize-and-pad draw of each digit."""
    x_t = randomization.random_resize_pad(x, *RESIZE_PAD)[0]
    return F.cross_entropy(model(x_t), y)


def _train_resize_pad(model, s: dict) -> None:
    train_mnist(model, s, _resize_pad_loss)


KEYED_MEMBERS = 6  # keyed classifiers available; the notebooks use settings()["naive_keys"]


RECIPES: dict[str, Recipe] = {
    "mnist_cnn_resize_pad": Recipe(
        build=lambda: small_cnn(1, 10, RESIZE_PAD[1]),
        train=_train_resize_pad,
        settings={
            p: {"data": p, "epochs": 10, "lr": 2e-3, "seed": 0, "desc": "mnist_cnn_resize_pad"}
            for p in config.PROFILES
        },
    ),
}
RECIPES |= {
    f"mnist_keyed_{j}": Recipe(
        build=lambda j=j: diversification.KeyedClassifier(  # the key is part of the recipe
            small_cnn(1, 10, 28),
            diversification.make_key(
                28, diversification.SUBBANDS[j % 3], torch.Generator().manual_seed(1000 + j)
            ),
        ),
        train=train_mnist,
        settings={
            p: {"data": p, "epochs": e, "lr": 2e-3, "seed": j, "desc": f"mnist_keyed_{j}"}
            for p, e in (("quick", 5), ("full", 10))
        },
    )
    for j in range(KEYED_MEMBERS)
}
