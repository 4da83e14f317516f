"""Recipes of chapter 2 (naive defenses).

``mnist_cnn_resize_pad``: the primer's small CNN for 32-pixel inputs, trained on digits passed
through Xie et al.'s random resize-and-pad (28 -> [28, 32), zero-padded to 32). Xie et al. keep a
pretrained ImageNet network (its global pooling accepts any size); our CNN has a fixed input
size, so it is trained on the transformed digits, as Guo et al. retrain for their transforms.

``mnist_keyed_{j}``, j = 0..5: the keyed classifiers of Taran et al.'s randomized diversification,
the small CNN behind a secret DCT sign-flip key on sub-band ``"d"``, ``"h"`` or ``"v"`` (in turn),
each key drawn from its own seed. The key is a buffer, saved with the weights.

``mnist_hgd_{guide}``, guide in ``pixel``, ``feature``, ``logit``: the noise predictor of Liao et
al.'s high-level representation guided denoiser (:mod:`course_lib.defenses.hgd`), saved as the
transform ``HGD(D)``, trained with the ``guide``'s loss against the frozen ``mnist_cnn`` (loaded
from the zoo, never updated) on fixed pairs (clean digit, PGD digit): each quarter of the
training digits attacked once, before training, by ℓ∞ PGD on ``mnist_cnn`` at one ε of the
chapter's grid (the paper also trains on a fixed set of attack images, made by several attacks
against several models). The FGD layer is ``"4"``, the ReLU after ``mnist_cnn``'s second
convolution (B, 32, 7, 7), the analogue of Inception's top convolutional block ``Mixed_7c``.
``primer`` is a training module here: a change to ``mnist_cnn``'s recipe retrains the denoisers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import config
from ..attacks import pgd
from ..data import TensorLoader, load_mnist
from ..defenses import diversification, hgd, randomization, tv
from ..models import small_cnn
from ..train import fit
from . import primer
from .trainers import Recipe, train_mnist

TRAINING_MODULES = (diversification, randomization, tv, hgd, primer)

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


# ----- chapter 2 HGD: guided denoisers against the frozen mnist_cnn ----------------------------

HGD_FEATURE_LAYER = "4"  # mnist_cnn's ReLU after the second convolution, (B, 32, 7, 7)
_HGD_PAIRS: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # the three guides share their pairs


def _hgd_pairs(classifier, s: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_adv, x): the training digits, quarter k attacked by PGD at the k-th ε of s["eps"]."""
    x_train, y_train, _, _ = load_mnist(s["data"])
    dev = next(classifier.parameters()).device
    x, y = x_train.to(dev), y_train.to(dev)
    parts = zip(x.chunk(len(s["eps"])), y.chunk(len(s["eps"])), s["eps"], strict=True)
    x_adv = torch.cat([pgd(classifier, xk, yk, eps, steps=s["steps"]) for xk, yk, eps in parts])
    return x_adv, x


def _train_hgd(model, s: dict) -> None:
    """Fit the denoiser with the guided loss; the classifier stays frozen (not in the optimizer,
    called with detached parameters by ``hgd.hgd_loss``)."""
    from . import load  # the zoo package imports this module: load lazily

    dev = next(model.parameters()).device
    classifier = load(s["classifier"], s["data"], device=dev)  # eval mode
    pairs_key = repr([s[k] for k in ("data", "classifier", "eps", "steps", "seed")] + [str(dev)])
    if pairs_key not in _HGD_PAIRS:  # computed once per process, under the recipe's seed
        _HGD_PAIRS[pairs_key] = _hgd_pairs(classifier, s)
    x_adv, x = _HGD_PAIRS[pairs_key]
    loader = TensorLoader(x_adv, x, batch_size=64, seed=s["seed"])

    def loss_fn(denoiser, xb_adv, xb):
        return hgd.hgd_loss(denoiser, classifier, xb, xb_adv, s["guide"], s["layer"])

    fit(model, loader, loss_fn, epochs=s["epochs"], lr=s["lr"], desc=s["desc"])


RECIPES |= {
    f"mnist_hgd_{guide}": Recipe(
        build=lambda: hgd.HGD(hgd.UNetDenoiser(1)),
        train=_train_hgd,
        settings={
            p: {
                "data": p,
                "classifier": "mnist_cnn",
                "guide": guide,
                "layer": HGD_FEATURE_LAYER if guide == "feature" else None,
                "eps": list(config.SETTINGS[p]["naive_eps"]),
                "steps": config.SETTINGS[p]["hgd_pgd_steps"],
                "epochs": config.SETTINGS[p]["hgd_epochs"],
                "lr": config.SETTINGS[p]["hgd_lr"],
                "seed": 0,
                "desc": f"mnist_hgd_{guide}",
            }
            for p in config.PROFILES
        },
    )
    for guide in hgd.GUIDES
}
