"""course_lib.lipschitz.jacobian_spectral_norm against a naive loop over samples.

The naive version is what one writes first: for every sample, the full Jacobian with
``torch.autograd.functional.jacobian``, then its largest singular value. Ours runs one batched
backward pass per output for all samples at once. Cases:

* the chapter-1 heat-map: the local constant of a 2-64-64-2 MLP on a 200x200 grid (budget: 1 s on
  a 2-core CPU), ours as the median of several runs, the naive loop once (it takes tens of seconds);
* a batch of 64 MNIST-shaped inputs through ``Normalize`` + a 784-128-128-10 MLP.

    python benchmarks/bench_lipschitz.py      (also part of `make bench`)
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from course_lib.config import seed_everything
from course_lib.lipschitz import jacobian_spectral_norm
from course_lib.models import MNIST_MEAN, MNIST_STD, Normalize, mlp


def naive_jacobian_norms(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One ``autograd.functional.jacobian`` per sample: the loop the library avoids."""
    norms = []
    for xi in x:
        J = torch.autograd.functional.jacobian(lambda v: model(v.unsqueeze(0))[0], xi)  # (K, ...)
        norms.append(torch.linalg.matrix_norm(J.reshape(J.shape[0], -1), ord=2))
    return torch.stack(norms)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_case(name: str, model: nn.Module, x: torch.Tensor, repeats: int = 7) -> dict:
    jacobian_spectral_norm(model, x[:8])  # warm-up (the first batched backward pass sets up vmap)
    ours = median_seconds(lambda: jacobian_spectral_norm(model, x), repeats)
    naive = median_seconds(lambda: naive_jacobian_norms(model, x), 1)
    batched, looped = jacobian_spectral_norm(model, x[:64]), naive_jacobian_norms(model, x[:64])
    assert torch.allclose(batched, looped), "batched and per-sample Jacobian norms differ"
    return {
        "case": name,
        "course_lib_ms": 1000 * ours,
        "peer_ms": 1000 * naive,
        "ratio": ours / naive,
        "peer": "per-sample autograd.functional.jacobian loop",
    }


def run() -> list[dict]:
    seed_everything(0)
    toy = mlp(2, (64, 64), 2).eval()
    side = torch.linspace(0, 1, 200)
    grid = torch.cartesian_prod(side, side)  # (40000, 2)
    mnist = nn.Sequential(Normalize(MNIST_MEAN, MNIST_STD), mlp(784, (128, 128), 10)).eval()
    digits = torch.rand(64, 1, 28, 28)
    return [
        bench_case("Jacobian norm heat-map 200x200, 2-64-64-2 MLP", toy, grid),
        bench_case("Jacobian norm, 64 digits, 784-128-128-10 MLP", mnist, digits),
    ]


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for r in run():
        print(
            f"{r['case']:<50} course_lib {r['course_lib_ms']:9.1f} ms   naive loop "
            f"{r['peer_ms']:9.1f} ms   ratio {r['ratio']:.4f}"
        )
