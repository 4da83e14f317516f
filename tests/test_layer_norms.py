"""Layer norms: power <= exact <= Gram, FFT spectrum = dense circular matrix, conv bounds hold on
the real zero-padded, strided conv2d, and the reshaped-kernel norm is not a bound."""

import math

import pytest
import torch

from course_lib.lipschitz.layer_norms import (
    conv_norm_bound,
    conv_norm_fft,
    conv_norm_gram,
    conv_norm_power,
    conv_operator_matrix,
    conv_reshaped_bound,
    conv_reshaped_norm,
    conv_spectrum_fft,
    spectral_norm_exact,
    spectral_norm_gram,
    spectral_norm_power,
)


def _dense(seed: int, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    m, n = (int(v) for v in torch.randint(2, 60, (2,), generator=gen))
    return torch.randn(m, n, generator=gen, dtype=dtype)


def _kernel(seed: int, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    c_out, c_in = (int(v) for v in torch.randint(1, 6, (2,), generator=gen))
    k = int(torch.randint(1, 5, (1,), generator=gen))
    return torch.randn(c_out, c_in, k, k, generator=gen, dtype=dtype)


@pytest.mark.parametrize("seed", range(8))
def test_dense_power_below_exact_below_gram_within_one_percent(seed):
    W = _dense(seed)
    exact = spectral_norm_exact(W)
    power, _ = spectral_norm_power(W, 10)
    gram = spectral_norm_gram(W)  # default iterations
    assert power <= exact * (1 + 1e-12)
    assert exact * (1 - 1e-12) <= gram <= exact * 1.01
    # the closed-form envelope of Gram iteration: sigma_1 <= bound <= rank^(2^-(T+1)) sigma_1
    for T in (1, 2, 3):
        rank = min(W.shape)
        assert spectral_norm_gram(W, T) <= exact * rank ** (2.0 ** -(T + 1)) * (1 + 1e-12)


def test_float32_gram_within_documented_tolerance():
    W = _dense(3, torch.float32)
    exact = spectral_norm_exact(W)
    assert spectral_norm_gram(W).double() >= exact * (1 - 1e-5)  # a few ulps below at worst


def test_power_iteration_warm_start_converges():
    W = _dense(5)
    sigma, u = spectral_norm_power(W, 2)
    for _ in range(200):
        sigma, u = spectral_norm_power(W, 1, u)
    assert sigma == pytest.approx(float(spectral_norm_exact(W)), rel=1e-6)


def test_gram_rescaling_does_not_overflow():
    W = 1e30 * _dense(1)
    assert torch.isfinite(spectral_norm_gram(W, 12))


@pytest.mark.parametrize("seed", range(6))
def test_fft_spectrum_equals_dense_circular_matrix(seed):
    K = _kernel(seed)
    n = max(K.shape[-1], 5)
    p = K.shape[-1] // 2
    M = conv_operator_matrix(K, n, padding=p, circular=True) if K.shape[-1] % 2 else None
    if M is None:  # even kernel: circular pad (p, p) + valid conv shrinks the output; use k-1
        M = _circular_even(K, n)
    dense = torch.linalg.svdvals(M)
    fft = conv_spectrum_fft(K, n)
    r = min(len(dense), len(fft))
    torch.testing.assert_close(fft[:r], dense[:r], atol=1e-10, rtol=1e-10)
    assert conv_norm_fft(K, n) == pytest.approx(float(dense[0]), rel=1e-10)


def _circular_even(K, n):
    basis = torch.eye(K.shape[1] * n * n, dtype=K.dtype).view(-1, K.shape[1], n, n)
    k = K.shape[-1]
    padded = torch.nn.functional.pad(basis, (0, k - 1, 0, k - 1), mode="circular")
    return torch.nn.functional.conv2d(padded, K).reshape(basis.shape[0], -1).T


@pytest.mark.parametrize("seed", range(6))
def test_conv_gram_bounds_fft_within_one_percent(seed):
    K = _kernel(seed + 10)
    n = 8
    exact = conv_norm_fft(K, n)
    gram = conv_norm_gram(K, n)
    assert exact * (1 - 1e-12) <= gram <= exact * 1.01


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), (2, 0), (3, 2), (2, 2)])
@pytest.mark.parametrize("seed", range(3))
def test_conv_bounds_hold_on_real_zero_padded_strided_conv(seed, stride, padding):
    K = _kernel(seed + 20)
    n = 7
    if n + 2 * padding < K.shape[-1]:
        pytest.skip("kernel larger than the padded input")
    true = torch.linalg.matrix_norm(conv_operator_matrix(K, n, stride, padding), ord=2)
    power, _ = conv_norm_power(K, n, stride, padding, iterations=300)
    assert power <= true * (1 + 1e-9)
    assert power == pytest.approx(float(true), rel=1e-3)
    assert conv_norm_bound(K, n, stride, padding) >= true * (1 - 1e-12)
    assert conv_reshaped_bound(K, stride) >= true * (1 - 1e-12)


def test_reshaped_kernel_norm_is_not_a_bound():
    """The lecture's option 1: an all-ones 3x3 kernel has reshaped norm 3 but operator norm 9
    (its DC gain), and a random 3x3 kernel is below the true norm too."""
    K = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    assert conv_reshaped_norm(K) == pytest.approx(3.0)
    assert conv_norm_fft(K, 16) == pytest.approx(9.0)
    true = torch.linalg.matrix_norm(conv_operator_matrix(K, 16, padding=1), ord=2)
    assert true > 2.5 * conv_reshaped_norm(K)
    assert conv_reshaped_bound(K) == pytest.approx(9.0)
    Kr = torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert conv_reshaped_norm(Kr) < conv_norm_power(Kr, 12, 1, 1, 100)[0]


def test_bad_input_raises():
    W = torch.randn(4, 3)
    with pytest.raises(ValueError, match="iterations"):
        spectral_norm_power(W, 0)
    with pytest.raises(ValueError, match="iterations"):
        spectral_norm_gram(W, 0)
    K = torch.randn(2, 2, 5, 5)
    with pytest.raises(ValueError, match="input size n"):
        conv_norm_fft(K, 3)
    with pytest.raises(ValueError, match="input size n"):
        conv_norm_power(K, 2, padding=1)
    with pytest.raises(ValueError, match="K must be"):
        conv_reshaped_norm(W)
    with pytest.raises(ValueError, match="stride"):
        conv_reshaped_bound(K, 0)
    assert math.isfinite(float(conv_norm_bound(K, 5, 2, 2)))


def test_gram_of_zero_matrix_and_zero_fft_block_is_zero_not_nan():
    # the Laplacian's Fourier symbol is 0 at frequency (0, 0): one zero block among nonzero ones
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64).view(1, 1, 3, 3)
    assert float(conv_norm_fft(lap, 8)) == pytest.approx(8.0, rel=1e-12)  # |symbol| max: 4 + 4
    gram = float(conv_norm_gram(lap, 8))
    assert 8.0 * (1 - 1e-12) <= gram <= 8.0 * 1.01
    for W in (torch.zeros(3, 2), torch.zeros(2, 5, dtype=torch.complex64)):
        assert float(spectral_norm_gram(W)) == 0.0


def test_gram_zero_guard_leaves_nonzero_inputs_bitwise_unchanged():
    W = _dense(3, torch.float32)
    G, log_scale = W.mT if W.shape[-2] < W.shape[-1] else W, torch.zeros(())
    for _ in range(6):  # the loop before the guard was added, for comparison
        r = G.square().sum((-2, -1)).sqrt()
        G, log_scale = G / r, 2 * (log_scale + torch.log(r))
        G = G.mH @ G
    before = torch.exp((torch.log(G.square().sum((-2, -1)).sqrt()) + log_scale) / 2**6)
    assert torch.equal(spectral_norm_gram(W), before)


def test_power_iteration_estimate_converges_at_sigma_ratio_to_the_4t():
    # W = diag(1, rho), u_0 = (1, 1)/sqrt 2: u_t ∝ (1, rho^{2t}) (angle ~ rho^{2t}) and
    # ||W u_t||^2 = (1 + rho^{4t+2}) / (1 + rho^{4t}), so 1 - ||W u_t|| ~ (1 - rho^2) rho^{4t} / 2
    rho = 0.8
    W = torch.diag(torch.tensor([1.0, rho], dtype=torch.float64))
    u0 = torch.ones(2, 1, dtype=torch.float64) / 2**0.5
    for t in (2, 5, 10, 20):
        sigma, u = spectral_norm_power(W, t, u0)
        assert float(u[1, 0] / u[0, 0]) == pytest.approx(rho ** (2 * t), rel=1e-9)
        exact = ((1 + rho ** (4 * t + 2)) / (1 + rho ** (4 * t))) ** 0.5
        assert float(sigma) == pytest.approx(exact, rel=1e-12)
        if t >= 5:  # the first-order term dominates once rho^{4t} is small
            assert 1 - float(sigma) == pytest.approx((1 - rho**2) * rho ** (4 * t) / 2, rel=0.05)


@pytest.mark.parametrize("stride,padding", [(2, 1), (1, 0), (3, 2)])
def test_conv_norm_power_on_non_square_kernel_matches_the_operator_matrix(stride, padding):
    K = torch.randn(3, 2, 3, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    n = 7
    true = torch.linalg.matrix_norm(conv_operator_matrix(K, n, stride, padding), ord=2)
    power, u = conv_norm_power(K, n, stride, padding, iterations=300)
    assert u.shape == (1, 2, n, n)
    assert float(power) == pytest.approx(float(true), rel=1e-6)
    if stride == 1:  # circular, stride 1: the FFT norm at n + 2p bounds the zero-padded one
        assert float(conv_norm_fft(K, n + 2 * padding)) >= float(true) * (1 - 1e-12)


def test_conv_norm_power_rejects_bad_stride_and_padding():
    K = torch.randn(2, 2, 3, 3)
    with pytest.raises(ValueError, match="stride"):
        conv_norm_power(K, 8, stride=0)
    with pytest.raises(ValueError, match="padding"):
        conv_norm_power(K, 8, padding=-1)


def test_conv_norm_fft_in_float32_agrees_with_float64_and_rejects_other_dtypes():
    K = _kernel(7)
    assert float(conv_norm_fft(K, 9, torch.float32)) == pytest.approx(
        float(conv_norm_fft(K, 9)), rel=1e-5
    )
    with pytest.raises(ValueError, match="dtype"):
        conv_norm_fft(K, 9, torch.int64)
