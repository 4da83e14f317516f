"""Constrained layers and Lipschitz losses: spectral normalization hits its target, Björck is
orthonormal, GroupSort permutes, hKR/tau-CE match direct formulas and deel-torchlip, and no l2 PGD
flips a certified prediction of a constrained net."""

import pytest
import torch
from deel.torchlip import functional as dtl_F
from deel.torchlip.modules import HKRMulticlassLoss, TauCrossEntropyLoss
from deel.torchlip.normalizers import bjorck_normalization
from torch import nn

from course_lib.lipschitz import lipschitz_upper_bound, margin_radius
from course_lib.lipschitz.attacks import pgd_l2_per_sample
from course_lib.lipschitz.constrained import (
    Bjorck,
    FullSort,
    GroupSort,
    MaxMin,
    bjorck,
    bjorck_conv2d,
    bjorck_linear,
    group_sort,
    spectral_normalize,
)
from course_lib.lipschitz.layer_norms import conv_operator_matrix, spectral_norm_exact
from course_lib.lipschitz.losses import hkr_loss, tau_cross_entropy
from course_lib.train import predict


@pytest.mark.parametrize("L_hat", [0.3, 1.0, 7.0])
def test_spectral_normalization_hits_target_exactly(L_hat):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    spectral_normalize(net, L_hat)
    net.train()
    net(torch.randn(4, 5)).sum().backward()  # training mode: power estimate, differentiable
    net.eval()
    assert lipschitz_upper_bound(net) == pytest.approx(L_hat, rel=1e-4)


def test_spectral_normalization_gram_is_below_target_in_training():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    spectral_normalize(net, 2.0, "gram")
    net.train()
    norms = [float(spectral_norm_exact(m.weight)) for m in net if isinstance(m, nn.Linear)]
    assert max(norms) <= 2.0**0.5 * (1 + 1e-6)


def test_spectral_normalize_rejects_bad_input():
    with pytest.raises(ValueError, match="L_hat"):
        spectral_normalize(nn.Sequential(nn.Linear(2, 2)), 0.0)
    with pytest.raises(ValueError, match="layer 1"):
        spectral_normalize(nn.Sequential(nn.Linear(2, 2), nn.Conv2d(1, 1, 3)), 1.0)
    with pytest.raises(ValueError, match="nn.Linear"):
        spectral_normalize(nn.Sequential(nn.ReLU()), 1.0)


@pytest.mark.parametrize("shape", [(64, 32), (20, 50), (30, 30)])
def test_bjorck_is_orthonormal_below_tolerance_and_matches_deel(shape):
    W = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    A = bjorck(W, iterations=60, tol=1e-8)
    small = A @ A.T if shape[0] < shape[1] else A.T @ A
    assert torch.linalg.matrix_norm(small - torch.eye(min(shape), dtype=A.dtype), 2) < 1e-8
    # deel-torchlip iterates from a spectrally normalised start to the same fixed point, the
    # polar factor W (W^T W)^{-1/2}
    theirs = bjorck_normalization(W / spectral_norm_exact(W), eps=1e-12, maxiter=200)
    torch.testing.assert_close(A, theirs, atol=1e-6, rtol=0)


def test_bjorck_layers_are_one_lipschitz():
    torch.manual_seed(0)
    lin = bjorck_linear(12, 7).eval()
    assert spectral_norm_exact(lin.weight) <= 1 + 1e-5
    conv = bjorck_conv2d(3, 4, 3, stride=1, padding=1).eval()
    M = conv_operator_matrix(conv.weight.detach().double(), 6, 1, 1)
    assert torch.linalg.matrix_norm(M, 2) <= 1 + 1e-5


@pytest.mark.parametrize("g", [1, 2, 4, None])
def test_group_sort_permutes_each_group_and_matches_deel(g):
    x = torch.randn(5, 8, 3, 3)
    out = group_sort(x, g)
    size = 8 if g is None else g
    groups_in = x.reshape(5, 8 // size, size, 3, 3)
    groups_out = out.reshape(5, 8 // size, size, 3, 3)
    torch.testing.assert_close(groups_out, groups_in.sort(2).values)
    assert (groups_out.diff(dim=2) >= 0).all()
    torch.testing.assert_close(out, dtl_F.group_sort(x, g))


def test_group_sort_preserves_gradient_norm():
    x = torch.randn(4, 6, requires_grad=True)
    v = torch.randn(4, 6)
    (g,) = torch.autograd.grad((GroupSort(2)(x) * v).sum(), x)
    torch.testing.assert_close(g.norm(dim=1), v.norm(dim=1))
    assert isinstance(MaxMin()(x), torch.Tensor) and FullSort()(x).shape == x.shape


def test_group_sort_rejects_bad_group_size():
    with pytest.raises(ValueError, match="group_size"):
        group_sort(torch.randn(2, 6), 4)
    with pytest.raises(ValueError, match="x must be"):
        group_sort(torch.randn(6), 2)


def test_bjorck_rejects_bad_input():
    W = torch.randn(4, 3)
    with pytest.raises(ValueError, match="nonzero"):
        bjorck(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="beta"):
        bjorck(W, beta=1.5)
    with pytest.raises(ValueError, match="W must be a matrix"):
        bjorck(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="iterations"):
        Bjorck(iterations=0)
    with pytest.raises(ValueError, match="tol"):
        Bjorck(tol=0.0)


def test_bjorck_mlp_and_recipe_loss_reject_unknown_names():
    from course_lib.zoo.lipschitz_nets import _loss, bjorck_mlp

    with pytest.raises(ValueError, match="activation"):
        bjorck_mlp(2, (4,), 2, activation="tanh")
    with pytest.raises(ValueError, match="loss"):
        _loss({"loss": "hinge"})


def _logits_labels(seed=0, B=32, K=4):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, K, generator=gen, dtype=torch.float64), torch.randint(
        0, K, (B,), generator=gen
    )


@pytest.mark.parametrize("alpha,margin", [(0.0, 1.0), (0.5, 0.4), (0.9, 2.0), (1.0, 1.0)])
def test_hkr_matches_direct_formula_and_deel_torchlip(alpha, margin):
    f, y = _logits_labels()
    K = f.shape[1]
    onehot = torch.nn.functional.one_hot(y, K).double()
    hinge = sum(
        (K - 1 if y[i] == k else 1)
        * max(0.0, margin / 2 - (1 if y[i] == k else -1) * float(f[i, k]))
        for i in range(len(y))
        for k in range(K)
    ) / (len(y) * K)
    kr = (
        sum(float(f[y == k, k].mean() - f[y != k, k].mean()) for k in range(K) if (y == k).any())
        / K
    )
    expected = alpha * hinge - (1 - alpha) * kr
    assert float(hkr_loss(f, y, alpha, margin)) == pytest.approx(expected, rel=1e-10)
    theirs = HKRMulticlassLoss(alpha, min_margin=margin)(f, onehot)
    assert float(hkr_loss(f, y, alpha, margin)) == pytest.approx(float(theirs), rel=1e-10)


@pytest.mark.parametrize("tau", [0.1, 1.0, 30.0])
def test_tau_cross_entropy_matches_direct_formula_and_deel(tau):
    f, y = _logits_labels(1)
    direct = -torch.log_softmax(tau * f, 1)[torch.arange(len(y)), y].mean() / tau
    assert float(tau_cross_entropy(f, y, tau)) == pytest.approx(float(direct), rel=1e-10)
    assert float(tau_cross_entropy(f, y, tau)) == pytest.approx(
        float(TauCrossEntropyLoss(tau)(f, y)), rel=1e-10
    )


def test_hkr_with_a_class_missing_from_the_batch_deviates_from_deel_as_documented():
    # class 2 absent: our KR term counts it as 0; deel-torchlip's empty mean makes it -mean f_2
    f = torch.randn(8, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0])
    kr_k = [float(f[y == k, k].mean() - f[y != k, k].mean()) for k in (0, 1)]
    ours = -(kr_k[0] + kr_k[1] + 0.0) / 3
    deel = -(kr_k[0] + kr_k[1] - float(f[:, 2].mean())) / 3
    assert float(hkr_loss(f, y, 0.0, 1.0)) == pytest.approx(ours, rel=1e-12)
    onehot = torch.nn.functional.one_hot(y, 3).double()
    assert float(HKRMulticlassLoss(0.0, min_margin=1.0)(f, onehot)) == pytest.approx(deel, rel=1e-9)
    assert ours != pytest.approx(deel)


def test_losses_reject_bad_input():
    f, y = _logits_labels()
    with pytest.raises(ValueError, match="tau"):
        tau_cross_entropy(f, y, 0.0)
    with pytest.raises(ValueError, match="margin"):
        hkr_loss(f, y, 0.5, -1.0)
    with pytest.raises(ValueError, match="alpha"):
        hkr_loss(f, y, 1.5, 1.0)


def test_no_pgd_flip_inside_certified_radius_of_constrained_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), bjorck_linear(16, 32), GroupSort(2), bjorck_linear(32, 32), MaxMin()
    )
    net.append(bjorck_linear(32, 3))
    net.eval()
    x = torch.rand(64, 1, 4, 4)
    y = predict(net, x)
    L = lipschitz_upper_bound(net)
    assert L <= 1 + 1e-5
    r = margin_radius(net(x), L)  # (B,)
    x_adv = pgd_l2_per_sample(net, x, y, 0.999 * r, steps=30, restarts=3)
    assert (predict(net, x_adv) == y).all()


def test_margin_pgd_finds_the_flip_of_a_linear_model_just_beyond_its_distance():
    """For f(x) = W x + b the distance to the boundary is margin / ||w_y - w_i||: PGD on the
    margin finds a flip at 1.05x that distance and none at 0.99x (no flip inside a sound radius)."""
    from course_lib.lipschitz.attacks import pgd_l2_margin

    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(6, 2))
    x = 0.4 + 0.2 * torch.rand(16, 1, 2, 3)
    with torch.no_grad():  # put the boundary through the cloud, far from the [0, 1] box's faces
        lin[1].bias -= lin(x).mean(0)
    y = predict(lin, x)
    w = lin[1].weight.detach()
    f = lin(x).detach()
    dist = (f.gather(1, y[:, None]) - f.gather(1, 1 - y[:, None])).squeeze(1) / (w[0] - w[1]).norm()
    inside = pgd_l2_margin(lin, x, y, 0.99 * dist, steps=20, restarts=2)
    beyond = pgd_l2_margin(lin, x, y, 1.05 * dist, steps=50, restarts=2)
    assert (predict(lin, inside) == y).all()
    reachable = dist < 0.3  # the flip at 1.05 dist lies inside the [0, 1] box
    assert reachable.sum() >= 4
    assert (predict(lin, beyond) != y)[reachable].all()


def test_bjorck_training_mode_is_orthonormal_to_the_training_tolerance_and_differentiable():
    torch.manual_seed(0)
    lin = bjorck_linear(40, 24).train()
    with torch.no_grad():
        lin.parametrizations.weight.original.add_(0.3 * torch.randn(24, 40))  # off the init
    W = lin.weight  # (24, 40), power pre-scaling, tolerance 1e-3
    assert torch.linalg.matrix_norm(W @ W.T - torch.eye(24)) < 1e-3
    W.square().sum().backward()
    assert torch.isfinite(lin.parametrizations.weight.original.grad).all()
