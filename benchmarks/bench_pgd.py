"""course_lib.attacks.pgd against torchattacks.PGD: same model, same batch, same settings.

Runs the two alternately, swapping which goes first (so that drift of the machine hits both),
and reports medians and the ratio course_lib / torchattacks (below 1 is faster).
"""

from __future__ import annotations

import statistics
import time

import torch
import torchattacks

from course_lib.attacks import pgd
from course_lib.config import seed_everything
from course_lib.data import load_mnist5k
from course_lib.models import small_cnn

CASES = [  # (name, model, image shape, batch size)
    ("small_cnn MNIST", lambda: small_cnn(1, 10, 28), (1, 28, 28), 256),
    (
        "small_cnn CIFAR-sized",
        lambda: small_cnn(3, 10, 32, (0.5,) * 3, (0.25,) * 3),
        (3, 32, 32),
        256,
    ),
]


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_case(name, build, shape, batch, eps=0.3, alpha=0.01, steps=10, repeats=30) -> dict:
    seed_everything(0)
    model = build().eval()
    if shape == (1, 28, 28):
        x, y = load_mnist5k().x_test[:batch], load_mnist5k().y_test[:batch]
    else:
        x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    ours = lambda: pgd(model, x, y, eps, alpha=alpha, steps=steps)  # noqa: E731
    peer = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    theirs = lambda: peer(x, y)  # noqa: E731
    for fn in (ours, theirs):  # warm-up
        fn()
    t_ours, t_theirs = [], []
    for i in range(repeats):  # alternate which one runs first
        if i % 2:
            t_ours.append(time_once(ours))
            t_theirs.append(time_once(theirs))
        else:
            t_theirs.append(time_once(theirs))
            t_ours.append(time_once(ours))
    m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)
    return {
        "case": f"{name}, batch {batch}, PGD-{steps}",
        "peer": "torchattacks 3.5.1 PGD",
        "course_lib_ms": 1000 * m_ours,
        "peer_ms": 1000 * m_theirs,
        "ratio": m_ours / m_theirs,
    }


def run() -> list[dict]:
    return [bench_case(*case) for case in CASES]
