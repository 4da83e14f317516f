"""Chapter 4: a TRADES training epoch against ART's ``AdversarialTrainerTRADESPyTorch``, and a
101 x 101 loss landscape around one digit.

TRADES: the same small CNN (same initial weights), the same 512 MNIST-5k digits, batches of 64,
Adam, beta = 6, eps = 0.3 and 10 attack steps on both sides. The inner maximisations differ as
the two libraries define them: ours climbs the KL from x + 0.001 N(0, I) (the reference code);
ART runs the attack it is given, here its PGD on the cross-entropy with a random start, the same
number of forward/backward passes. Ratio = course_lib / ART (below 1 is faster).

Landscape: :func:`course_lib.landscape.loss_plane` on 101 x 101 points (one pass per chunk)
against the same grid evaluated one row (101 points) per forward pass. Target: <= 1 s on 2 cores.
"""

from __future__ import annotations

import logging
import statistics
import time

import numpy as np
import torch

from course_lib.config import seed_everything
from course_lib.data import TensorLoader, load_mnist5k
from course_lib.defenses.trades import trades_loss
from course_lib.landscape import gradient_sign_direction, grid, loss_plane, random_direction
from course_lib.models import small_cnn
from course_lib.train import train_epoch

N_DIGITS, BATCH, EPS, STEPS, BETA = 512, 64, 0.3, 10, 6.0


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class _Plain(torch.nn.Module):
    """The same network, seen by ART as one module: for an ``nn.Sequential`` ART 1.20.1's
    wrapper returns every layer's output and its TRADES trainer scores the first one (the
    normalised image) as if it were the logits, which fails."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def bench_trades_epoch(repeats: int = 3) -> dict:
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.defences.trainer import AdversarialTrainerTRADESPyTorch
    from art.estimators.classification import PyTorchClassifier

    logging.getLogger("art").setLevel(logging.WARNING)
    data = load_mnist5k()
    x, y = data.x_train[:N_DIGITS], data.y_train[:N_DIGITS]
    seed_everything(0)
    init = small_cnn().state_dict()

    def ours():
        model = small_cnn()
        model.load_state_dict(init)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        train_epoch(model, TensorLoader(x, y, BATCH), trades_loss(BETA, EPS, STEPS), optimizer)

    def theirs():
        model = small_cnn()
        model.load_state_dict(init)
        classifier = PyTorchClassifier(
            _Plain(model),  # ART's trainer reads output [0] of an nn.Sequential's layer list
            loss=torch.nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
            input_shape=(1, 28, 28),
            nb_classes=10,
            clip_values=(0.0, 1.0),
        )
        attack = ProjectedGradientDescentPyTorch(
            classifier, eps=EPS, eps_step=2.5 * EPS / STEPS, max_iter=STEPS, verbose=False
        )
        trainer = AdversarialTrainerTRADESPyTorch(classifier, attack, beta=BETA)
        trainer.fit(x.numpy(), y.numpy(), batch_size=BATCH, nb_epochs=1)

    t_ours, t_theirs = [], []
    for i in range(repeats):  # alternate which one runs first
        pair = (ours, theirs) if i % 2 else (theirs, ours)
        for fn in pair:
            (t_ours if fn is ours else t_theirs).append(_timed(fn))
    m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)
    return {
        "case": f"TRADES epoch, {N_DIGITS} digits, batch {BATCH}, {STEPS} steps",
        "peer": "ART 1.20.1 AdversarialTrainerTRADESPyTorch (+ PGD)",
        "course_lib_ms": 1000 * m_ours,
        "peer_ms": 1000 * m_theirs,
        "ratio": m_ours / m_theirs,
    }


def bench_landscape(resolution: int = 101, repeats: int = 5) -> dict:
    seed_everything(0)
    model = small_cnn().eval()
    data = load_mnist5k()
    x, y = data.x_test[:1], data.y_test[:1]
    u = gradient_sign_direction(model, x, y)[0]
    v = random_direction(x)[0]
    a = grid(0.3, resolution)

    def ours():
        loss_plane(model, x[0], y[0], u, v, a, a)

    @torch.no_grad()
    def row_by_row():
        for b in a:
            points = x[0] + a.view(-1, 1, 1, 1) * u + b * v  # (R, 1, 28, 28)
            torch.nn.functional.cross_entropy(model(points), y.repeat(resolution), reduction="none")

    ours(), row_by_row()  # warm-up
    t_ours = [_timed(ours) for _ in range(repeats)]
    t_rows = [_timed(row_by_row) for _ in range(repeats)]
    m_ours, m_rows = float(np.median(t_ours)), float(np.median(t_rows))
    return {
        "case": f"loss landscape {resolution}x{resolution}, one digit (target <= 1 s)",
        "peer": "same grid, one forward pass per row",
        "course_lib_ms": 1000 * m_ours,
        "peer_ms": 1000 * m_rows,
        "ratio": m_ours / m_rows,
    }


def run() -> list[dict]:
    return [bench_landscape(), bench_trades_epoch()]


if __name__ == "__main__":
    for row in run():
        print(row)
