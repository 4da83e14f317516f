"""GloRo certification (notebook 5.7) against a plain forward pass of the same network.

Once the exact pairwise bound is frozen (computed once per weight version, in ``eval()`` mode),
a GloRo certificate of a batch is one forward pass plus :math:`O(B C)` work for the ⊥ logit and
the radius. Target: at most 1.2x the plain forward pass (both under ``torch.no_grad``) on an
untrained MNIST-sized MLP 784-128-128-10, batch 1024. The peer column is the plain forward pass.
The two sides run alternately, swapping which goes first; medians are reported.
"""

from __future__ import annotations

import torch
from bench_lipschitz_nets import compare, row  # same alternating-median timing

from course_lib.certify.gloro import GloroNet
from course_lib.config import seed_everything
from course_lib.models import mlp


def run(repeats: int = 31, batch: int = 1024) -> list[dict]:
    seed_everything(0)
    net = GloroNet(mlp(784, (128, 128), 10)).eval()
    x = torch.rand(batch, 1, 28, 28)

    def forward():
        with torch.no_grad():
            net(x)

    t_ours, t_theirs = compare(lambda: net.certify(x, 0.3), forward, repeats)
    case = f"GloRo certify, MLP 784-128-128-10, batch {batch}"
    return [row(case, "plain forward (no_grad)", t_ours, t_theirs)]


if __name__ == "__main__":
    for r in run():
        print(
            f"{r['case']}: {r['course_lib_ms']:.2f} ms vs {r['peer']} {r['peer_ms']:.2f} ms, "
            f"ratio {r['ratio']:.3f} (target <= 1.2)"
        )
