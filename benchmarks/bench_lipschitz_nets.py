"""The Lipschitz layers of notebooks 5.4-5.6 against their references, in one run.

* Gram iteration on the FFT blocks (``conv_norm_gram``, 6 iterations: G_1 from the Gram kernel,
  real arithmetic, one scale, pruning: :mod:`course_lib.lipschitz.gram_conv`) against the exact
  FFT + batched SVD for a 64x64x3x3 kernel on 32x32 inputs, twice: Sedghi et al. (2019)'s method
  as published (all n^2 blocks) and our one-sided version of it (``conv_norm_fft``, half the
  blocks by conjugate symmetry); and against the textbook Gram loop on the complex one-sided
  blocks (``spectral_norm_gram(conv_fft_blocks(K, n))``, the same number). The ratio of times, all
  in float32 (equal precision), and the relative gap of the Gram value to the float64 exact norm
  (must be within 1%, upward);
* our Björck linear and conv layers and GroupSort-2 against deel-torchlip 1.0.5's
  ``SpectralLinear`` / ``SpectralConv2d`` / ``GroupSort2``: one training-mode forward and backward
  on the same shapes.

The two sides run alternately, swapping which goes first (so that drift of the machine hits both);
medians are reported with the ratio course_lib / peer (below 1 is faster).
"""

from __future__ import annotations

import statistics
import time

import torch
from deel import torchlip

from course_lib.config import seed_everything
from course_lib.lipschitz import GroupSort, bjorck_conv2d, bjorck_linear
from course_lib.lipschitz.layer_norms import (
    conv_fft_blocks,
    conv_norm_fft,
    conv_norm_gram,
    spectral_norm_gram,
)


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(ours, theirs, repeats: int) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``theirs``, alternating which runs first."""
    for fn in (ours, theirs):  # warm-up
        fn()
    t_ours, t_theirs = [], []
    for i in range(repeats):
        first, second = (ours, theirs) if i % 2 else (theirs, ours)
        t_a, t_b = time_once(first), time_once(second)
        (t_ours if first is ours else t_theirs).append(t_a)
        (t_theirs if first is ours else t_ours).append(t_b)
    return statistics.median(t_ours), statistics.median(t_theirs)


def row(case: str, peer: str, t_ours: float, t_theirs: float) -> dict:
    return {
        "case": case,
        "peer": peer,
        "course_lib_ms": 1000 * t_ours,
        "peer_ms": 1000 * t_theirs,
        "ratio": t_ours / t_theirs,
    }


def sedghi_full_fft_svd(K: torch.Tensor, n: int) -> torch.Tensor:
    """Sedghi et al. (2019)'s method as published: the FFT on the full n x n grid and every
    singular value of every one of the n^2 blocks (their code: np.fft.fft2 + np.linalg.svd)."""
    return torch.linalg.svdvals(torch.fft.fft2(K, s=(n, n)).permute(2, 3, 0, 1)).max()


def bench_gram_vs_fft_svd(repeats: int = 7) -> list[dict]:
    K = torch.randn(64, 64, 3, 3, generator=torch.Generator().manual_seed(0)) / 24
    gram, exact = float(conv_norm_gram(K, 32)), float(conv_norm_fft(K, 32))  # float32, float64
    gap = f" (gap {100 * (gram / exact - 1):+.4f}%)"
    rows = []
    for peer, fn in (
        ("full FFT + SVD of all n^2 blocks (Sedghi et al.)", lambda: sedghi_full_fft_svd(K, 32)),
        ("one-sided FFT + SVD (conv_norm_fft)", lambda: conv_norm_fft(K, 32, torch.float32)),
        (
            "textbook Gram-6 (complex, every one-sided block)",
            lambda: spectral_norm_gram(conv_fft_blocks(K, 32), 6).max(),
        ),
    ):
        t_ours, t_theirs = compare(lambda: conv_norm_gram(K, 32), fn, repeats)
        case = "Gram-6 (ours) vs " + peer.split(" (")[0] + ", 64x64x3x3 on 32x32, float32"
        rows.append(row(case + gap, peer, t_ours, t_theirs))
    return rows


def train_step(layer: torch.nn.Module, x: torch.Tensor):
    """One training-mode forward + backward through ``layer``."""

    def step():
        layer.zero_grad()
        layer(x).square().sum().backward()

    return step


def bench_layers(repeats: int = 15) -> list[dict]:
    seed_everything(0)
    rows = []
    x = torch.randn(256, 256)
    ours, theirs = bjorck_linear(256, 256).train(), torchlip.SpectralLinear(256, 256).train()
    rows.append(
        row(
            "Björck linear 256x256, batch 256, fwd+bwd",
            "deel-torchlip SpectralLinear",
            *compare(train_step(ours, x), train_step(theirs, x), repeats),
        )
    )
    x = torch.randn(32, 32, 16, 16)
    ours_c = bjorck_conv2d(32, 32, 3, padding=1).train()
    theirs_c = torchlip.SpectralConv2d(32, 32, 3, padding=1).train()
    rows.append(
        row(
            "Björck conv 32->32 3x3 on 16x16, batch 32, fwd+bwd",
            "deel-torchlip SpectralConv2d",
            *compare(train_step(ours_c, x), train_step(theirs_c, x), repeats),
        )
    )
    for shape in [(256, 512), (64, 64, 16, 16)]:
        x = torch.randn(*shape, requires_grad=True)

        def fb(act, x=x):
            return lambda: torch.autograd.grad(act(x).square().sum(), x)

        rows.append(
            row(
                f"GroupSort-2 on {shape}, fwd+bwd",
                "deel-torchlip GroupSort2",
                *compare(fb(GroupSort(2)), fb(torchlip.GroupSort2()), repeats * 2),
            )
        )
    return rows


def run() -> list[dict]:
    return [*bench_gram_vs_fft_svd(), *bench_layers()]


if __name__ == "__main__":
    for r in run():
        print(
            f"{r['case']:<64} {r['course_lib_ms']:>9.2f}ms {r['peer_ms']:>9.2f}ms "
            f"{r['ratio']:>7.3f}  {r['peer']}"
        )
