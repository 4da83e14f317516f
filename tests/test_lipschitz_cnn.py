"""Lipschitz bounds and spectral normalization of CNNs: the polyphase circular bound equals the
dense circular strided operator, bounds the real zero-padded strided conv2d, the network bound of
a CNN is above every measured Jacobian norm and above power iteration on the whole network, and a
spectrally normalised CNN has every real conv norm <= c and its bound <= L_hat."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.lipschitz import (
    lipschitz_upper_bound,
    lipschitz_upper_bound_pairwise,
    lipschitz_upper_bound_per_logit,
)
from course_lib.lipschitz.constrained import GroupSort, bjorck_conv2d, spectral_normalize
from course_lib.lipschitz.conv_bounds import (
    ConvSpectralNormalization,
    conv_norm_upper,
    polyphase_kernel,
    torus_size,
)
from course_lib.lipschitz.layer_norms import (
    conv_norm_fft,
    conv_norm_power,
    conv_operator_matrix,
    spectral_norm_exact,
)
from course_lib.lipschitz.measure import jacobian_spectral_norm

CASES = [  # (C_out, C_in, k, stride, padding, n)
    (4, 3, 3, 1, 1, 8),
    (5, 2, 5, 2, 2, 9),
    (3, 4, 4, 2, 1, 10),
    (6, 2, 3, 3, 0, 11),
    (3, 2, 2, 2, 0, 6),
]


def _cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=1, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 4, stride=2, padding=1),  # (6, 5, 5) on 10 x 10 inputs
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(150, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )  # float32: float64 convolutions are ~200x slower on a CPU


def _geometry(conv: nn.Conv2d) -> tuple[int, int]:
    return conv.stride[0], conv.padding[0]


def _circular_strided_matrix(K: torch.Tensor, N: int, s: int) -> torch.Tensor:
    """The dense matrix of the circular stride-s convolution on an N x N torus."""
    c_in, k = K.shape[1], K.shape[-1]
    d = c_in * N * N
    basis = torch.eye(d, dtype=K.dtype).view(d, c_in, N, N)
    cols = F.conv2d(F.pad(basis, (0, k - 1, 0, k - 1), mode="circular"), K, stride=s)
    return cols.reshape(d, -1).T


@pytest.mark.parametrize("case", CASES)
def test_polyphase_norm_is_the_circular_strided_norm_and_bounds_the_real_conv(case):
    c_out, c_in, k, s, p, n = case
    gen = torch.Generator().manual_seed(sum(case))
    K = torch.randn(c_out, c_in, k, k, generator=gen, dtype=torch.float64)
    N = torus_size((n, n), (k, k), s, (p, p))
    assert N % s == 0 and N >= n + 2 * p
    circular = torch.linalg.matrix_norm(_circular_strided_matrix(K, N, s), ord=2)
    poly = conv_norm_fft(polyphase_kernel(K, s), N // s)
    assert float(poly) == pytest.approx(float(circular), rel=1e-9)
    real = torch.linalg.matrix_norm(conv_operator_matrix(K, n, s, p), ord=2)  # dense, exact
    upper = conv_norm_upper(K, (n, n), s, (p, p))
    assert float(real) <= upper * (1 + 1e-9)
    power, _ = conv_norm_power(K.float(), n, s, p, iterations=100)  # the course's ground truth
    assert float(power) <= upper * (1 + 1e-6)


def test_network_bound_is_above_jacobian_norms_and_power_iteration_on_the_network():
    net = _cnn().eval()
    L = lipschitz_upper_bound(net, (1, 10, 10))
    x = torch.rand(64, 1, 10, 10)
    assert float(jacobian_spectral_norm(net, x).max()) <= L * (1 + 1e-5)
    # power iteration on the linear part of the network (ReLUs removed: its Jacobian at x > 0
    # everywhere is a product of the layers); the product bound covers it too
    lin = nn.Sequential(*[m for m in net if not isinstance(m, nn.ReLU)])
    u = torch.randn(1, 1, 10, 10)
    for _ in range(200):
        u.requires_grad_(True)
        (g,) = torch.autograd.grad(lin(u).sub(lin(torch.zeros_like(u))).square().sum() / 2, u)
        u = (g / g.norm()).detach()
    sigma = float((lin(u) - lin(torch.zeros_like(u))).norm().detach())
    assert sigma <= L * (1 + 1e-5)
    assert L <= sigma * 30, "a sane bound is not astronomically loose on a 4-layer net"


def test_per_logit_and_pairwise_bounds_on_a_cnn():
    net = _cnn(1).eval()
    shape = (1, 10, 10)
    L = lipschitz_upper_bound(net, shape)
    L_j = lipschitz_upper_bound_per_logit(net, shape)
    L_ji = lipschitz_upper_bound_pairwise(net, shape)
    assert (L_j <= L * (1 + 1e-9)).all()
    assert (L_ji <= L_j[:, None] + L_j[None, :] + 1e-9).all()


@pytest.mark.parametrize("method", ["power", "gram"])
@pytest.mark.parametrize("L_hat", [0.5, 3.0])
def test_spectral_normalized_cnn_real_conv_norms_below_c_and_bound_below_target(method, L_hat):
    net = spectral_normalize(_cnn(2), L_hat, method, input_shape=(1, 10, 10))
    net.train()
    for _ in range(5):  # a few SGD steps: warm-started estimates, changing weights
        net.zero_grad()
        net(torch.rand(8, 1, 10, 10)).square().sum().backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.1 * p.grad
    net.eval()
    c = L_hat ** (1 / 4)
    sizes = {0: 10, 2: 10}  # input size of each conv
    for i, n in sizes.items():
        conv = net[i]
        s, p = conv.stride[0], conv.padding[0]
        power, _ = conv_norm_power(conv.weight, n, s, p, 200)  # the ground truth, on conv2d
        exact = spectral_norm_exact(conv_operator_matrix(conv.weight, n, s, p))  # dense SVD
        assert float(power) <= float(exact) * (1 + 1e-5)
        assert float(exact) <= c * (1 + 1e-5)
        assert float(exact) >= 0.8 * c, "the normalization is not far below its target"
    assert lipschitz_upper_bound(net, (1, 10, 10)) <= L_hat * (1 + 1e-5)


def test_gram_method_keeps_training_weights_below_c():
    net = spectral_normalize(_cnn(3), 1.0, "gram", input_shape=(1, 10, 10)).train()
    c = 1.0
    for i in (0, 2):
        conv = net[i]
        exact = spectral_norm_exact(conv_operator_matrix(conv.weight, 10, *_geometry(conv)))
        assert float(exact) <= c * (1 + 1e-5)


def test_bjorck_groupsort_cnn_bound_at_most_one():
    torch.manual_seed(0)
    net = nn.Sequential(
        bjorck_conv2d(1, 8, 4, stride=2, padding=1),
        GroupSort(2),
        bjorck_conv2d(8, 16, 4, stride=2, padding=1),
        GroupSort(2),
        nn.Flatten(),
        nn.Linear(16 * 3 * 3, 10),
    ).eval()
    with torch.no_grad():
        net[-1].weight /= torch.linalg.matrix_norm(net[-1].weight, ord=2)
    L = lipschitz_upper_bound(net, (1, 12, 12))
    assert L <= 1 + 1e-5
    x = torch.rand(32, 1, 12, 12)
    assert float(jacobian_spectral_norm(net, x).max()) <= L * (1 + 1e-4)


def test_bad_input_is_rejected_with_the_layer_named():
    net = _cnn()
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2d\).*input_shape"):
        lipschitz_upper_bound(net)
    with pytest.raises(ValueError, match="layer 0"):
        lipschitz_upper_bound_pairwise(net)
    with pytest.raises(ValueError, match="input_shape"):
        lipschitz_upper_bound(net, (1, 10))
    with pytest.raises(ValueError, match="L_hat"):
        spectral_normalize(_cnn(), 0.0, input_shape=(1, 10, 10))
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2d\)"):
        spectral_normalize(_cnn(), 1.0)
    small = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"layer 0.*kernel size"):
        lipschitz_upper_bound(small, (1, 2, 2))
    with pytest.raises(ValueError, match="channels"):
        lipschitz_upper_bound(small, (3, 8, 8))
    dilated = nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.Flatten())
    with pytest.raises(ValueError, match="dilation"):
        lipschitz_upper_bound(dilated, (1, 8, 8))
    with pytest.raises(ValueError, match="padding"):
        lipschitz_upper_bound(nn.Sequential(nn.Conv2d(1, 2, 3, padding="same")), (1, 8, 8))
    with pytest.raises(ValueError, match="method"):
        ConvSpectralNormalization(1.0, (8, 8), 1, (0, 0), "svd")


def test_conv_without_input_shape_keeps_dense_callers_working():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert lipschitz_upper_bound(mlp) == pytest.approx(
        math.prod(
            float(torch.linalg.matrix_norm(m.weight.detach().double(), ord=2)) for m in mlp[1::2]
        )
    )
