"""course_lib.defenses.tv.tv_minimize against ART's TotalVarMin: 256 MNIST digits, half the
pixels dropped (ART's ``prob`` is the probability of *keeping* a pixel, so ``prob = 0.5``).

ART minimises its own variant of the objective (a non-squared data term, row/column-norm TV) with
scipy's L-BFGS-B, one image and channel at a time. Its default stops after ``max_iter = 10``
iterations, far from converged; L-BFGS on this non-smooth objective rarely meets its tolerance, so a
converged run needs ``max_iter`` in the hundreds (about a quarter of a second per digit at 1000).
We report both against our batched primal-dual solver at 100 iterations, and how converged ours is
(relative gap to the objective after 10x more iterations, the criterion of the unit test).
ART's loop costs about the same for every digit, so the converged run (minutes for 256 digits) is
timed on the first ``PEER_SUBSET`` digits and scaled to the batch; the row says so.
The ratio is course_lib / ART (below 1 is faster).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from art.defences.preprocessor import TotalVarMin

from course_lib.data import load_mnist5k
from course_lib.defenses.tv import pixel_dropout_mask, tv_minimize, tv_objective

DROP_PROB, WEIGHT, ITERS, BATCH, PEER_SUBSET = 0.5, 0.03, 100, 256, 32


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(repeats: int = 3) -> list[dict]:
    torch.manual_seed(0)
    x = load_mnist5k().x_test[:BATCH]
    mask = pixel_dropout_mask(x, DROP_PROB, torch.Generator().manual_seed(0))
    x_np = x.permute(0, 2, 3, 1).numpy()  # ART wants channels last
    ours = lambda: tv_minimize(x, mask, WEIGHT, ITERS)  # noqa: E731
    ours()  # warm-up
    f100 = tv_objective(ours(), x, mask, WEIGHT)
    f1000 = tv_objective(tv_minimize(x, mask, WEIGHT, 10 * ITERS), x, mask, WEIGHT)
    gap = ((f100 - f1000) / f1000).max().item()
    rows = []
    for max_iter, peer_repeats, n_peer in ((10, repeats, BATCH), (1000, 1, PEER_SUBSET)):
        np.random.seed(0)  # noqa: NPY002 (ART draws its masks from the global generator)
        art = TotalVarMin(prob=1 - DROP_PROB, max_iter=max_iter, clip_values=(0.0, 1.0))
        scale = BATCH / n_peer  # ART's per-image loop: time on n_peer digits, scaled to BATCH

        def theirs(art=art, n_peer=n_peer, scale=scale):
            start = time.perf_counter()
            art(x_np[:n_peer])
            return scale * (time.perf_counter() - start)

        t_ours, t_theirs = [], []
        for i in range(peer_repeats):  # alternate which one runs first
            pair = [(t_ours, ours), (t_theirs, theirs)]
            for times, fn in pair if i % 2 else pair[::-1]:
                times.append(fn() if fn is theirs else time_once(fn))
        t_ours += [time_once(ours) for _ in range(repeats)]
        m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)
        rows.append(
            {
                "case": f"masked TV, {BATCH} digits, drop {DROP_PROB}, {ITERS} it. (gap {gap:.2%})",
                "peer": f"ART 1.20.1 TotalVarMin, L-BFGS-B max_iter={max_iter}"
                + ("" if n_peer == BATCH else f" ({n_peer} digits timed, x{scale:g})"),
                "course_lib_ms": 1000 * m_ours,
                "peer_ms": 1000 * m_theirs,
                "ratio": m_ours / m_theirs,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
