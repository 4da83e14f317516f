"""GloRo nets (course_lib.certify.gloro) and certified top-k (course_lib.certify.topk)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from course_lib.certify.gloro import (
    GloroNet,
    bottom_logit,
    eps_schedule,
    gloro_certify,
    gloro_loss_fn,
    gloro_radius,
)
from course_lib.certify.topk import (
    TopKSetMargin,
    certified_k,
    top_k_sets,
    topk_margin,
    topk_radius,
)
from course_lib.lipschitz.attacks import pgd_l2_margin
from course_lib.models import mlp


def _net(seed: int = 0, C: int = 4) -> GloroNet:
    torch.manual_seed(seed)
    return GloroNet(mlp(2, (16, 16), C)).eval()


def test_pairwise_bound_matches_direct_computation():
    net = _net()
    lin = [m for m in net.model if isinstance(m, nn.Linear)]
    k_sub = 1.0
    for m in lin[:-1]:
        k_sub *= torch.linalg.svdvals(m.weight.detach().double())[0]
    W = lin[-1].weight.detach().double()
    for j, i in itertools.product(range(4), repeat=2):
        direct = k_sub * torch.linalg.vector_norm(W[j] - W[i])
        assert float(net.frozen_lipschitz()[j, i]) == pytest.approx(float(direct), rel=1e-10)


def test_pairwise_bound_above_every_sampled_slope():
    # the local slopes of y_i - y_j never exceed K_ij (the theorem the notebook's pair check uses)
    net = _net(3)
    K = net.frozen_lipschitz()
    x1 = torch.randn(4000, 2)
    x2 = x1 + 0.05 * torch.randn(4000, 2)
    with torch.no_grad():
        d = net(x1)[:, :, None] - net(x1)[:, None, :] - (net(x2)[:, :, None] - net(x2)[:, None, :])
    slopes = (d.abs() / (x1 - x2).norm(dim=1)[:, None, None]).amax(0).double()  # (C, C)
    assert (slopes <= K * (1 + 1e-6)).all()
    assert (slopes > 0.05 * K).any()  # the sampled slopes are not trivially small


def test_training_bound_is_power_iteration_below_exact_and_converges():
    net = _net()
    exact = net.frozen_lipschitz()
    net.train()
    for _ in range(200):  # warm-started iterates converge to the top singular vectors
        K = net.pairwise_lipschitz().detach().double()
    off = ~torch.eye(4, dtype=torch.bool)
    assert (K[off] <= exact[off] * (1 + 1e-5)).all()
    assert torch.allclose(K[off], exact[off], rtol=1e-4)


def test_bottom_logit_hand_built():
    y = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.5]])
    K = torch.tensor([[0.0, 1.0, 4.0], [1.0, 0.0, 2.0], [4.0, 2.0, 0.0]])
    # row 0: j = 0, max(1 + 0.5*1, 0 + 0.5*4) = 2.0; row 1: j = 1, max(0 + 0.5, 1.5 + 1) = 2.5
    assert torch.allclose(bottom_logit(y, K, 0.5), torch.tensor([2.0, 2.5]))
    pred, r = gloro_certify(y, K, 0.5)
    assert pred.tolist() == [0, -1]  # 3 > 2 certified; 2 < 2.5 is ⊥
    assert torch.allclose(r, torch.tensor([min(2 / 1, 3 / 4), min(2 / 1, 0.5 / 2)]).double())


def test_tie_is_never_certified():
    y = torch.tensor([[2.0, 2.0, 0.0], [1.0, 5.0, 5.0]])
    K = torch.ones(3, 3) - torch.eye(3)
    for eps in (0.0, 1e-3, 1.0):
        pred, r = gloro_certify(y, K, eps)
        assert (pred == -1).all() and (r == 0).all()


def test_certified_iff_above_bottom_logit_and_iff_radius_above_eps():
    torch.manual_seed(1)
    y, K = torch.randn(500, 5), torch.rand(5, 5) + 0.1
    K = (K + K.T) / 2 * (1 - torch.eye(5))
    for eps in (0.0, 0.1, 0.5):
        pred, r = gloro_certify(y, K, eps)
        assert torch.equal(pred >= 0, r > eps)
        assert torch.equal(pred >= 0, y.amax(1) > bottom_logit(y, K, eps))
        assert torch.equal(pred[pred >= 0], y.argmax(1)[pred >= 0])


def test_soundness_no_flip_inside_radius():
    net = _net(seed=2)
    torch.manual_seed(0)
    x = torch.rand(300, 2)
    pred, r = net.certify(x, 0.0)
    ok = r > 1e-4
    assert ok.sum() > 100
    x_adv = pgd_l2_margin(net, x[ok], pred[ok], 0.999 * r[ok].float(), steps=40, restarts=3)
    assert (net(x_adv).argmax(1) == pred[ok]).all()
    # the attack has teeth: with a bound 10x too small (radii 10x too large) it flips points
    x_far = pgd_l2_margin(net, x[ok], pred[ok], 10 * r[ok].float(), steps=40, restarts=3)
    assert (net(x_far).argmax(1) != pred[ok]).any()


def test_eps_schedule_ramps_geometrically_then_stays():
    assert eps_schedule(0, 100, 0.4) == pytest.approx(0.004)
    assert eps_schedule(25, 100, 0.4) == pytest.approx(0.04)  # half way in log scale
    assert eps_schedule(50, 100, 0.4) == pytest.approx(0.4) == eps_schedule(99, 100, 0.4)


def test_loss_trains_down_the_bottom_logit():
    torch.manual_seed(0)
    net = GloroNet(mlp(2, (16,), 2)).train()
    x = torch.rand(128, 2)
    y = (x[:, 0] > 0.5).long()
    loss_fn = gloro_loss_fn(0.05, 200)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        loss_fn(net, x, y).backward()
        opt.step()
    pred, _ = net.eval().certify(x, 0.05)
    assert (pred == y).float().mean() > 0.5


def test_topk_hand_built():
    y = torch.tensor([[4.0, 3.9, 0.0, -1.0]])
    K = torch.ones(4, 4) - torch.eye(4)
    assert topk_radius(y, K, 1).item() == pytest.approx(0.1)
    assert topk_radius(y, K, 2).item() == pytest.approx(3.9)  # min_{j<2, i>=2} y_j - y_i
    assert topk_radius(y, K, 3).item() == pytest.approx(1.0)
    assert topk_margin(y, K, 0.5, 2).item() == pytest.approx(3.4)
    assert certified_k(y, K, 0.5, 3).item() == 2  # top-1 not robust at 0.5, top-2 is
    assert certified_k(y, K, 0.05, 3).item() == 1
    assert certified_k(y, K, 5.0, 3).item() == 0  # nothing certified: ⊥
    assert top_k_sets(y, 2).tolist() == [[True, True, False, False]]


def test_topk_tie_at_the_edge_not_certified_and_k1_matches_gloro():
    y = torch.tensor([[3.0, 1.0, 1.0, 0.0]])
    K = torch.ones(4, 4) - torch.eye(4)
    assert topk_radius(y, K, 2).item() == 0 and certified_k(y, K, 0.0, 2).item() == 1
    torch.manual_seed(0)
    y, K = torch.randn(200, 5), torch.rand(5, 5) * (1 - torch.eye(5)) + 0.1 * (1 - torch.eye(5))
    assert torch.allclose(topk_radius(y, K, 1), gloro_radius(y, K))


def test_topk_soundness_no_set_change_inside_radius():
    net = _net(seed=3, C=5)
    torch.manual_seed(0)
    x = torch.rand(300, 2)
    with torch.no_grad():
        y = net(x)
    r = topk_radius(y, net.frozen_lipschitz(), 2)
    ok = r > 1e-4
    assert ok.sum() > 50
    sets = top_k_sets(y[ok], 2)
    wrapped = TopKSetMargin(net, sets)
    zeros = torch.zeros(int(ok.sum()), dtype=torch.long)
    x_adv = pgd_l2_margin(wrapped, x[ok], zeros, 0.999 * r[ok].float(), steps=40, restarts=3)
    assert torch.equal(top_k_sets(net(x_adv), 2), sets)


@pytest.mark.parametrize(
    "call",
    [
        lambda: gloro_certify(torch.zeros(2, 3), torch.ones(3, 3), -0.1),  # eps < 0
        lambda: gloro_certify(torch.zeros(2, 3), torch.ones(2, 2), 0.1),  # K shape
        lambda: gloro_certify(torch.zeros(2, 3), -torch.ones(3, 3), 0.1),  # K < 0
        lambda: gloro_certify(torch.zeros(2, 1), torch.ones(1, 1), 0.1),  # C < 2
        lambda: topk_radius(torch.zeros(2, 3), torch.ones(3, 3), 0),  # k < 1
        lambda: topk_radius(torch.zeros(2, 3), torch.ones(3, 3), 3),  # k > C - 1
        lambda: certified_k(torch.zeros(2, 3), torch.ones(3, 3), 0.1, 3),  # k_max > C - 1
        lambda: topk_margin(torch.zeros(2, 3), torch.ones(3, 3), float("nan"), 1),
        lambda: eps_schedule(0, 0, 0.1),  # total_steps < 1
        lambda: eps_schedule(0, 10, 0.1, ramp=1.5),
        lambda: gloro_loss_fn(-1.0, 10),
        lambda: _net().certify(torch.rand(3, 2), -1.0),
        lambda: GloroNet(nn.Sequential(nn.Linear(2, 3), nn.ReLU())),  # no final Linear
        lambda: GloroNet(nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 2))),
    ],
)
def test_bad_input_raises(call):
    with pytest.raises(ValueError):
        call()


def test_certify_uses_the_exact_bound_even_in_train_mode():
    net = _net(seed=4)
    x = torch.rand(50, 2)
    expected = net.certify(x, 0.01)
    net.train()
    for _ in range(3):  # training-mode calls move the power iterates, not the certificate
        net.pairwise_lipschitz()
    got = net.certify(x, 0.01)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
