"""Randomized smoothing: our CERTIFY against (a) its physical limit, the bare forward passes of
the same n0 + n noisy samples, and (b) ART's PyTorchRandomizedSmoothing.certify (same model,
same n0, n, alpha, batch size). Medians of alternated runs; ratio = course_lib / peer.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

from course_lib.certify.smoothing import Smooth
from course_lib.config import seed_everything
from course_lib.data import load_mnist5k
from course_lib.models import small_cnn

SIGMA, N0, N, ALPHA, BATCH = 0.25, 100, 10_000, 0.001, 1000


def _median_alternated(fns: list, repeats: int) -> list[float]:
    times = [[] for _ in fns]
    for i in range(repeats):
        order = range(len(fns)) if i % 2 == 0 else reversed(range(len(fns)))
        for j in order:
            start = time.perf_counter()
            fns[j]()
            times[j].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def run(repeats: int = 15) -> list[dict]:
    seed_everything(0)
    model = small_cnn(1, 10, 28).eval()
    x = load_mnist5k().x_test[0]  # (1, 28, 28)
    smooth = Smooth(model, 10, SIGMA)
    # the physical limit: the same forward passes on noisy inputs drawn beforehand
    chunks = [
        x + SIGMA * torch.randn(min(BATCH, n - s), *x.shape)
        for n in (N0, N)
        for s in range(0, n, BATCH)
    ]

    @torch.no_grad()
    def bare_forward():
        for c in chunks:
            model(c).argmax(1)

    art = PyTorchRandomizedSmoothing(
        model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 28, 28),
        nb_classes=10,
        device_type="cpu",
        sample_size=N0,
        scale=SIGMA,
        alpha=ALPHA,
    )
    ours = lambda: smooth.certify(x, N0, N, ALPHA, batch_size=BATCH)  # noqa: E731
    theirs = lambda: art.certify(x[None].numpy().astype(np.float32), n=N, batch_size=BATCH)  # noqa: E731
    for fn in (ours, theirs, bare_forward):  # warm-up
        fn()
    t_ours, t_bare, t_art = _median_alternated([ours, bare_forward, theirs], repeats)
    case = f"certify small_cnn MNIST, n0={N0} n={N}, batch {BATCH}"
    return [
        {
            "case": case,
            "peer": "bare forward of the same noisy samples",
            "course_lib_ms": 1000 * t_ours,
            "peer_ms": 1000 * t_bare,
            "ratio": t_ours / t_bare,
        },
        {
            "case": case,
            "peer": "ART 1.20.1 PyTorchRandomizedSmoothing.certify",
            "course_lib_ms": 1000 * t_ours,
            "peer_ms": 1000 * t_art,
            "ratio": t_ours / t_art,
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
