"""Gram iteration on convolutions in real arithmetic with pruning (course_lib.lipschitz.gram_conv):
the same number as the textbook complex version on all blocks, and still an upper bound."""

import pytest
import torch

from course_lib.lipschitz.gram_conv import (
    conv_gram_blocks,
    conv_norm_gram_pruned,
    hermitian_square,
)
from course_lib.lipschitz.layer_norms import conv_fft_blocks, conv_norm_fft, spectral_norm_gram


def _kernel(seed, c_out=6, c_in=4, k=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("n", [3, 5, 8, 9])
@pytest.mark.parametrize("shape", [(6, 4, 3, 3), (4, 6, 3, 2), (3, 3, 3, 3), (2, 5, 1, 3)])
def test_gram_kernel_blocks_equal_the_blocks_gram(n, shape):
    # G_1 from the (2k-1)^2-tap Gram kernel = K^(w)^* K^(w) from the FFT, on the smaller side
    K = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    C = conv_fft_blocks(K, n).reshape(-1, *shape[:2])  # (F, c_out, c_in)
    G = C.mH @ C if shape[1] <= shape[0] else C @ C.mH
    if shape[1] > shape[0]:
        G = G.conj()  # the blocks of K^T are the transposes: their Gram is conj(K^ K^*)
    S, T = conv_gram_blocks(K, n)
    torch.testing.assert_close(S, G.real, rtol=0, atol=1e-12)
    torch.testing.assert_close(T, G.imag, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_hermitian_square_equals_complex_product(scale):
    g = torch.Generator().manual_seed(2)
    M = torch.randn(3, 5, 5, generator=g, dtype=torch.complex128)
    H = M + M.mH
    S, T = hermitian_square(H.real, H.imag, scale)
    torch.testing.assert_close(torch.complex(S, T), scale * H @ H, rtol=0, atol=1e-12)


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


@pytest.mark.parametrize("iterations", [1, 3, 5])
def test_pruned_gram_gradient_equals_the_textbook_gradient(iterations):
    # the one scale for all blocks is a constant for autograd: the gradient must not change
    K = _kernel(3).requires_grad_(True)
    conv_norm_gram_pruned(K, 8, iterations).backward()
    ours, K.grad = K.grad, None
    spectral_norm_gram(conv_fft_blocks(K, 8), iterations).max().backward()
    torch.testing.assert_close(ours, K.grad, rtol=1e-8, atol=1e-12)


def test_zero_kernel_gives_zero():
    assert float(conv_norm_gram_pruned(torch.zeros(2, 3, 3, 3), 6)) == 0.0
