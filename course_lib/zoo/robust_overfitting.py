"""Recipes of chapter 3's robust-overfitting notebook (3.6): a long PGD-AT run with its per-epoch
history and its early-stopped weights, the generators, and PGD-AT with generated data.

Training goes through :mod:`course_lib.defenses.robust_overfitting`, ``.generated_data``,
:mod:`course_lib.generative` and :mod:`course_lib.ddpm` (this module's ``TRAINING_MODULES``).
The generated-data models fit their generator inside their own ``train`` (the Gaussians take a
second; the DDPM is loaded through the zoo, its settings are part of the models' settings).

Quick profile: a training subset of ``n_train`` MNIST-5k digits, so that a small CNN fits the
adversarial examples of its training set within a CPU budget (whether the test robust accuracy
then declines, i.e. robust overfitting, is measured in the notebook, not assumed). Full profile:
50,000 MNIST digits (the last 1,000 of the training split held out) and Madry et al.'s PGD-40 at
eps = 0.3.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import ddpm, generative
from ..attacks import pgd
from ..data import TensorLoader, load_mnist
from ..defenses import generated_data, robust_overfitting
from ..models import small_cnn
from ..train import cross_entropy_loss, fit, pgd_at_loss, train_epoch
from .trainers import Recipe

TRAINING_MODULES = (robust_overfitting, generated_data, generative, ddpm)

# the amounts of generated data (multiples of the real training set) of notebook 3.6; its 0x run
# is the long run itself (same settings and number of optimizer steps)
AMOUNTS = (1, 2, 4)
METRICS = ("loss", "train", "val", "test")  # columns of the long run's history buffer


def _splits(s: dict):
    """The training subset, the held-out validation digits (the end of the training split, never
    trained on) and the test digits the history is measured on."""
    x, y, xt, yt = load_mnist(s["data"])
    n, m = s["n_train"], s["n_eval"]
    train = x[:n], y[:n]
    val = x[-s["n_val"] :], y[-s["n_val"] :]
    return train, {"train": (x[:m], y[:m]), "val": val, "test": (xt[:m], yt[:m])}


def _ramped_pgd_at(s: dict, total_steps: int):
    """PGD-AT whose eps grows linearly over the first ``s["ramp"]`` fraction of the optimizer
    steps (then stays at ``s["eps"]``): a loss that counts its calls."""
    calls = [0]
    ramp_steps = max(1, round(s["ramp"] * total_steps))

    def loss_fn(model, x, y):
        calls[0] += 1
        eps = s["eps"] * min(1.0, calls[0] / ramp_steps)
        alpha = s["alpha_over_eps"] * eps
        return pgd_at_loss(eps, alpha=alpha, steps=s["steps"])(model, x, y)

    return loss_fn


def _build_long_run() -> nn.Module:
    run = nn.ModuleDict({"last": small_cnn(1, 10, 28), "best": small_cnn(1, 10, 28)})
    run.register_buffer("history", torch.zeros(0, len(METRICS)))  # (E, 4), resized by train
    run.register_buffer("lr", torch.zeros(0))  # (E,)
    run.register_buffer("best_epoch", torch.tensor(-1))
    run.register_load_state_dict_pre_hook(_fit_history_buffers)
    return run


def _fit_history_buffers(run: nn.Module, state_dict: dict, prefix: str, *_) -> None:
    """Give the history buffers the cached file's length before loading it."""
    for name in ("history", "lr"):
        if prefix + name in state_dict:
            setattr(run, name, torch.empty_like(state_dict[prefix + name]))


def _train_long_run(run: nn.Module, s: dict) -> None:
    """Rice et al.'s experiment: PGD-AT for many epochs, SGD with the learning rate divided by
    10 at 50% and 75%, PGD robust accuracy on fixed train / val / test digits after every epoch;
    ``best`` = the weights of the best validation epoch."""
    (x, y), splits = _splits(s)
    dev = next(run.parameters()).device
    splits = {k: (a.to(dev), b.to(dev)) for k, (a, b) in splits.items()}
    loader = TensorLoader(x.to(dev), y.to(dev), batch_size=s["batch"], seed=s["seed"])
    model = run["last"]
    optimizer = torch.optim.SGD(model.parameters(), lr=s["lr"], momentum=0.9, weight_decay=5e-4)
    lrs = robust_overfitting.piecewise_lr(s["lr"], s["epochs"])
    evaluate = robust_overfitting.robust_evaluator(
        splits, lambda m, a, b: pgd(m, a, b, s["eps"], steps=s["eval_steps"])
    )
    loss_fn = _ramped_pgd_at(s, s["epochs"] * len(loader))
    h = robust_overfitting.train_with_history(
        model, loader, loss_fn, optimizer, lrs, evaluate, desc=s["desc"]
    )
    run["best"].load_state_dict(h.best_state)
    run.history = torch.tensor([h.metrics[k] for k in METRICS]).T.to(dev)  # (E, 4)
    run.lr = torch.tensor(h.lr).to(dev)
    run.best_epoch = torch.tensor(h.best_epoch).to(dev)


def _fit_gaussians(s: dict) -> generative.ClassGaussians:
    (x, y), _ = _splits(s)
    return generative.ClassGaussians((1, 28, 28), 10, k=s["pca_k"]).fit(x, y)


def _build_gaussians() -> nn.Module:
    return generative.ClassGaussians((1, 28, 28), 10, k=_COMMON["quick"]["pca_k"])


def _train_gaussians(gen: nn.Module, s: dict) -> None:
    """Fit one Gaussian per class in a PCA subspace to the training subset (not trained by
    gradient descent; the zoo caches the fitted buffers like weights)."""
    gen.load_state_dict(_fit_gaussians(s).state_dict())


def _train_ddpm(model: nn.Module, s: dict) -> None:
    (x, y), _ = _splits(s)
    dev = next(model.parameters()).device
    ddpm.train_ddpm(model, x.to(dev), y.to(dev), s["ddpm_steps"], s["ddpm_lr"], s["ddpm_batch"])


def _train_teacher(model: nn.Module, s: dict) -> None:
    """The pseudo-labeller T: a standard CNN trained on the same training subset."""
    (x, y), _ = _splits(s)
    dev = next(model.parameters()).device
    loader = TensorLoader(x.to(dev), y.to(dev), batch_size=64, seed=s["seed"])
    fit(model, loader, cross_entropy_loss, epochs=s["teacher_epochs"], lr=1e-3, desc="teacher")


def _load_ddpm(dev) -> nn.Module:
    """The full profile's conditional generator, trained once by its own recipe."""
    from . import load

    return load("mnist_ro_ddpm", device=dev)


def _train_with_generated(model: nn.Module, s: dict) -> None:
    """PGD-AT on batches with ``s["fraction"]`` generated samples drawn from a pool of
    ``s["amount"]`` times the real training set (0: real data only), for the same number of
    optimizer steps whatever the amount."""
    (x, y), _ = _splits(s)
    dev = next(model.parameters()).device
    pool = None
    if s["amount"] > 0:
        gen = _fit_gaussians(s).to(dev) if s["generator"] == "gaussians" else _load_ddpm(dev)
        if s["labels"] == "pseudo":
            teacher = small_cnn(1, 10, 28).to(dev)
            _train_teacher(teacher, s)
            gen = generative.PseudoLabelled(generative.Unconditional(gen), teacher)
        pool = generated_data.generate_pool(gen, s["amount"] * s["n_train"], s["pool_batch"])
    fraction = s["fraction"] if s["amount"] > 0 else 0.0
    loader = generated_data.MixedLoader(
        (x.to(dev), y.to(dev)), pool, fraction, s["batch"], s["steps_per_epoch"], seed=s["seed"]
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=s["lr"], momentum=0.9, weight_decay=5e-4)
    lrs = robust_overfitting.piecewise_lr(s["lr"], s["gen_epochs"])
    loss_fn = _ramped_pgd_at(s, s["gen_epochs"] * len(loader))
    for e in tqdm(range(s["gen_epochs"]), desc=s["desc"], leave=False):
        for group in optimizer.param_groups:
            group["lr"] = lrs[e]
        train_epoch(model, loader, loss_fn, optimizer)


_COMMON = {
    "quick": {
        "data": "quick",
        "n_train": 500,  # a small training subset: the CNN can fit its adversarial examples
        "n_val": 200,  # held out: the last 200 digits of MNIST-5k's training split
        "n_eval": 200,  # train / test digits of the per-epoch history
        "eps": 0.3,
        "alpha_over_eps": 0.5,  # PGD-5 with step eps / 2
        "steps": 5,
        "eval_steps": 10,
        "ramp": 0.2,  # eps grows linearly over the first 20% of the optimizer steps
        "batch": 64,
        "lr": 0.05,
        "epochs": 60,
        "seed": 0,
        "pca_k": 30,
        "teacher_epochs": 10,
        "generator": "gaussians",
        "ddpm_steps": 3_000,  # only if the quick profile asks for the DDPM (notebook 3.6 does not)
        "ddpm_lr": 1e-3,
        "ddpm_batch": 64,
        "fraction": 0.7,
        "pool_batch": 1_000,
        "steps_per_epoch": 8,  # = the long run's batches per epoch: equal optimizer steps
        "gen_epochs": 60,
    },
    "full": {
        "data": "full",
        "n_train": 50_000,
        "n_val": 1_000,
        "n_eval": 1_000,
        "eps": 0.3,
        "alpha_over_eps": 0.25 / 3,  # Madry's PGD-40 with step 0.01 (= 0.3 / 30)
        "steps": 40,
        "eval_steps": 20,
        "ramp": 0.1,
        "batch": 128,
        "lr": 0.05,
        "epochs": 100,
        "seed": 0,
        "pca_k": 30,
        "teacher_epochs": 10,
        "generator": "ddpm",
        "ddpm_steps": 40_000,
        "ddpm_lr": 2e-4,
        "ddpm_batch": 128,
        "fraction": 0.7,
        "pool_batch": 10_000,  # DDPM sampling: 1000 network calls per chunk
        "steps_per_epoch": 391,
        "gen_epochs": 100,
    },
}

RECIPES: dict[str, Recipe] = {
    "mnist_ro_long": Recipe(
        build=_build_long_run,
        train=_train_long_run,
        settings={p: {**c, "desc": "mnist_ro_long"} for p, c in _COMMON.items()},
    ),
    "mnist_ro_gaussians": Recipe(
        build=_build_gaussians,
        train=_train_gaussians,
        settings=dict(_COMMON),
    ),
    "mnist_ro_teacher": Recipe(
        build=lambda: small_cnn(1, 10, 28),
        train=_train_teacher,
        settings=dict(_COMMON),
    ),
    "mnist_ro_ddpm": Recipe(
        build=lambda: ddpm.DDPM(T=1000, width=64),
        train=_train_ddpm,
        settings=dict(_COMMON),
    ),
}
for _amount in AMOUNTS:
    for _labels in ("conditional", "pseudo") if _amount == AMOUNTS[-1] else ("conditional",):
        _name = f"mnist_ro_gen_{_amount}x" + ("_pseudo" if _labels == "pseudo" else "")
        RECIPES[_name] = Recipe(
            build=lambda: small_cnn(1, 10, 28),
            train=_train_with_generated,
            settings={
                p: {**c, "amount": _amount, "labels": _labels, "desc": _name}
                for p, c in _COMMON.items()
            },
        )
