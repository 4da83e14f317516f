"""Gram iteration on convolutions in real arithmetic with pruning (course_lib.lipschitz.gram_conv):
the same number as the textbook complex version on all blocks, and still an upper bound."""

import pytest
import torch

from course_lib.lipschitz.gram_conv import (
    conv_fft_blocks_real,
    conv_norm_gram_pruned,
    hermitian_square,
)
from course_lib.lipschitz.layer_norms import conv_fft_blocks, conv_norm_fft, spectral_norm_gram


def _kernel(seed, c_out=6, c_in=4, k=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("n", [5, 8, 9])
@pytest.mark.parametrize("shape", [(6, 4, 3, 3), (4, 6, 3, 2), (3, 3, 5, 5)])
def test_real_blocks_equal_rfft2(n, shape):
    K = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    A, B = conv_fft_blocks_real(K, n)
    C = conv_fft_blocks(K, n).reshape(-1, *shape[:2])
    torch.testing.assert_close(A, C.real, rtol=0, atol=1e-12)
    torch.testing.assert_close(B, C.imag, rtol=0, atol=1e-12)


def test_hermitian_square_equals_complex_product():
    g = torch.Generator().manual_seed(2)
    M = torch.randn(3, 5, 5, generator=g, dtype=torch.complex128)
    H = M + M.mH
    S, T = hermitian_square(H.real, H.imag)
    torch.testing.assert_close(torch.complex(S, T), H @ H, rtol=0, atol=1e-12)


@pytest.mark.parametrize("iterations", [1, 2, 3, 4, 6, 8])
@pytest.mark.parametrize("seed", range(4))
def test_pruned_value_equals_textbook_gram_on_all_blocks(seed, iterations):
    K = _kernel(seed, c_out=(6, 4)[seed % 2], c_in=(4, 6)[seed % 2])
    textbook = spectral_norm_gram(conv_fft_blocks(K, 8), iterations).max()
    ours = conv_norm_gram_pruned(K, 8, iterations)
    assert float(ours) == pytest.approx(float(textbook), rel=1e-10)
    assert float(ours) >= float(conv_norm_fft(K, 8)) * (1 - 1e-12)


def test_pruning_keeps_the_bound_when_one_block_dominates():
    # a kernel whose largest singular value sits at one frequency, far above the rest: pruning
    # drops almost every block, and the bound must still be >= the exact norm
    K = 0.01 * _kernel(7, 8, 8)
    K[:, :, 1, 1] += torch.eye(8, dtype=torch.float64)  # DC-heavy identity tap
    K[0, 0] += 1.0  # one channel pair large at frequency 0
    exact = float(conv_norm_fft(K, 12))
    gram = float(conv_norm_gram_pruned(K, 12, 6))
    assert exact * (1 - 1e-12) <= gram <= exact * 1.01


def test_pruned_gram_is_differentiable():
    K = _kernel(3).requires_grad_(True)
    conv_norm_gram_pruned(K, 8, 5).backward()
    assert K.grad is not None and torch.isfinite(K.grad).all() and K.grad.abs().sum() > 0


def test_zero_kernel_gives_zero():
    assert float(conv_norm_gram_pruned(torch.zeros(2, 3, 3, 3), 6)) == 0.0
