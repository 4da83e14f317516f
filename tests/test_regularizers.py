import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.attacks import pgd
from course_lib.defenses.consistency import consistency_loss, js_divergence, random_affine
from course_lib.defenses.regularizers import cure_loss, cure_penalty, regularized
from course_lib.defenses.tla import angular_distance, hardest_negative, tla_loss, triplet_loss
from course_lib.defenses.trades import (
    error_decomposition,
    trades_attack,
    trades_loss,
    trades_objective,
)
from course_lib.train import cross_entropy_loss, robust_accuracy

# ----- framework and CURE --------------------------------------------------------------------


def test_regularized_adds_alpha_times_the_regularizer(random_cnn):
    model, x, y = random_cnn
    reg = lambda m, a, b: m(a).pow(2).mean()  # noqa: E731
    total = regularized(cross_entropy_loss, reg, 0.7)(model, x, y)
    expected = cross_entropy_loss(model, x, y) + 0.7 * reg(model, x, y)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        regularized(cross_entropy_loss, reg, -1.0)


def test_cure_penalty_closed_form_on_a_quadratic():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    H = A @ A.T + torch.eye(5, dtype=torch.float64)
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    loss = lambda z: 0.5 * torch.einsum("bi,ij,bj->b", z, H, z)  # noqa: E731
    h = 0.3
    s = (x @ H).sign()  # sign of the gradient H x
    z = s / s.norm(dim=1, keepdim=True)
    expected = (h * z @ H).pow(2).sum(1)  # h^2 ||H z||^2
    assert torch.allclose(cure_penalty(loss, x, h), expected)


def test_cure_penalty_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    W2 = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    W1 = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)

    def penalty(W):
        loss = lambda z: F.cross_entropy(torch.tanh(z @ W) @ W2, y, reduction="none")  # noqa: E731
        return cure_penalty(loss, x, 0.5).sum()

    assert torch.autograd.gradcheck(penalty, (W1,))


def test_cure_loss_trains_the_weights_and_checks_h(random_cnn):
    model, x, y = random_cnn
    cure_loss(4.0, 0.5)(model, x, y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ValueError, match="h"):
        cure_loss(4.0, 0.0)
    with pytest.raises(ValueError, match="lam"):
        cure_loss(-1.0, 0.5)


# ----- TRADES --------------------------------------------------------------------------------


def test_trades_objective_is_ce_plus_beta_batchmean_kl():
    gen = torch.Generator().manual_seed(0)
    z_nat = torch.randn(6, 4, generator=gen, requires_grad=True)
    z_adv = torch.randn(6, 4, generator=gen, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    identity = lambda t: t  # noqa: E731  (the "model" returns its input as logits)
    got = trades_objective(identity, z_nat, z_adv, y, beta=6.0)
    kl = F.kl_div(F.log_softmax(z_adv, 1), F.softmax(z_nat, 1), reduction="batchmean")
    expected = F.cross_entropy(z_nat, y) + 6.0 * kl
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # the gradient reaches the clean branch through the KL too (the target is not detached)
    (g_got,) = torch.autograd.grad(got, z_nat)
    kl_detached = F.kl_div(
        F.log_softmax(z_adv, 1), F.softmax(z_nat.detach(), 1), reduction="batchmean"
    )
    (g_detached,) = torch.autograd.grad(F.cross_entropy(z_nat, y) + 6.0 * kl_detached, z_nat)
    (g_expected,) = torch.autograd.grad(expected, z_nat)
    assert torch.allclose(g_got, g_expected)
    assert not torch.allclose(g_got, g_detached)
    (g_adv,) = torch.autograd.grad(trades_objective(identity, z_nat, z_adv, y, 6.0), z_adv)
    assert g_adv.abs().sum() > 0


def test_trades_attack_stays_in_the_ball_and_raises_the_kl(mnist_model, mnist):
    x = mnist.x_test[:32]
    torch.manual_seed(0)
    x_adv = trades_attack(mnist_model, x, 0.1, steps=5)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    p = F.softmax(mnist_model(x), 1)

    def kl(z):
        return F.kl_div(F.log_softmax(mnist_model(z), 1), p, reduction="sum").item()

    assert kl(x_adv) > 10 * kl((x + 0.001 * torch.randn_like(x)).clamp(0, 1))


def test_trades_loss_checks_and_beta_zero_is_clean_ce(random_cnn):
    model, x, y = random_cnn
    assert trades_loss(0.0, 0.1, 2)(model, x, y).item() == pytest.approx(
        cross_entropy_loss(model, x, y).item(), rel=1e-6
    )
    with pytest.raises(ValueError, match="beta"):
        trades_loss(-1.0, 0.3)
    with pytest.raises(ValueError, match="eps"):
        trades_loss(1.0, -0.3)
    with pytest.raises(ValueError, match="steps"):
        trades_loss(1.0, 0.3, steps=0)


def test_error_decomposition_adds_up(mnist_model, mnist):
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    attack = lambda m, a, b: pgd(m, a, b, 0.1, steps=5, random_start=False)  # noqa: E731
    d = error_decomposition(mnist_model, x, y, attack)
    assert d["robust"] == pytest.approx(d["natural"] + d["boundary"])
    assert d["robust"] == pytest.approx(1 - robust_accuracy(mnist_model, x, y, attack))


# ----- TLA -----------------------------------------------------------------------------------


def test_angular_distance_is_one_minus_abs_cos():
    a, b = torch.randn(8, 5), torch.randn(8, 5)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert torch.allclose(angular_distance(a, b), 1 - cos.abs(), atol=1e-6)
    assert torch.allclose(angular_distance(a, -3 * a), torch.zeros(8), atol=1e-6)
    assert torch.allclose(angular_distance(a, b), angular_distance(b, a))


def test_hardest_negative_is_the_most_similar_other_class_entry():
    gen = torch.Generator().manual_seed(0)
    anchor, pool = torch.randn(6, 4, generator=gen), torch.randn(20, 4, generator=gen)
    y_a, y_p = torch.randint(0, 3, (6,), generator=gen), torch.randint(0, 3, (20,), generator=gen)
    idx = hardest_negative(anchor, pool, y_a, y_p)
    for i in range(6):
        candidates = [j for j in range(20) if y_p[j] != y_a[i]]
        best = min(candidates, key=lambda j: angular_distance(anchor[i : i + 1], pool[j : j + 1]))
        assert idx[i].item() == best
    with pytest.raises(ValueError, match="pool"):
        hardest_negative(anchor, pool, torch.zeros(6, dtype=torch.long), torch.zeros(20).long())


def test_triplet_loss_hinge_and_norm_term():
    gen = torch.Generator().manual_seed(0)
    f_a, f_p, f_n = (torch.randn(5, 3, generator=gen) for _ in range(3))
    hinge = (angular_distance(f_a, f_p) - angular_distance(f_a, f_n) + 0.2).clamp_min(0)
    norms = f_a.norm(dim=1) + f_p.norm(dim=1) + f_n.norm(dim=1)
    got = triplet_loss(f_a, f_p, f_n, margin=0.2, lam=0.01)
    assert got.item() == pytest.approx((hinge + 0.01 * norms).mean().item(), rel=1e-6)
    assert triplet_loss(f_a, f_a, f_n, margin=0.0).item() == 0.0  # d(a, a) = 0 <= d(a, n)
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(f_a, f_p, f_n, margin=-0.1)
    with pytest.raises(ValueError, match="lam"):
        tla_loss(0.3, lam=-1.0)


def test_tla_loss_runs_and_trains(random_cnn):
    model, x, y = random_cnn
    tla_loss(0.1, steps=2)(model, x, y).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# ----- consistency ---------------------------------------------------------------------------


def test_js_divergence_properties():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 10, generator=gen), torch.randn(16, 10, generator=gen)
    assert torch.allclose(js_divergence(z1, z2), js_divergence(z2, z1))
    assert torch.allclose(js_divergence(z1, z1, 0.5), torch.zeros(16), atol=1e-7)
    far = js_divergence(torch.tensor([[50.0, 0.0]]), torch.tensor([[0.0, 50.0]]))
    assert far.item() == pytest.approx(math.log(2), rel=1e-4)
    assert (js_divergence(3 * z1, -3 * z1, 0.1) <= math.log(2) + 1e-6).all()
    # a manual formula at tau = 0.5
    p, q = F.softmax(z1 / 0.5, 1), F.softmax(z2 / 0.5, 1)
    m = (p + q) / 2
    manual = 0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)
    assert torch.allclose(js_divergence(z1, z2, 0.5), manual, atol=1e-6)
    with pytest.raises(ValueError, match="tau"):
        js_divergence(z1, z2, 0.0)


def test_random_affine_keeps_pixels_and_identity_at_zero():
    x = torch.rand(4, 1, 28, 28)
    out = random_affine(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(random_affine(x, 0.0, 0.0), x, atol=1e-5)


def test_consistency_loss_runs_and_checks(random_cnn):
    model, x, y = random_cnn
    consistency_loss(0.1, steps=2)(model, x, y).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ValueError, match="tau"):
        consistency_loss(0.3, tau=0.0)
    with pytest.raises(ValueError, match="lam"):
        consistency_loss(0.3, lam=-1.0)


def test_bad_input_names_the_argument(random_cnn):
    from torch import nn

    from course_lib.defenses.regularizers import cure_regularizer

    class Plain(nn.Module):  # the same network, but not an nn.Sequential
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    z = torch.randn(4, 10)
    with pytest.raises(ValueError, match="z1 and z2"):
        js_divergence(z, z[:3])
    with pytest.raises(ValueError, match="z1"):
        js_divergence(z[0], z[0])
    with pytest.raises(ValueError, match="x must be a batch of images"):
        random_affine(torch.rand(4, 28, 28))
    with pytest.raises(ValueError, match="max_shift"):
        random_affine(torch.rand(4, 1, 28, 28), max_shift=-1.0)
    with pytest.raises(ValueError, match="max_degrees"):
        random_affine(torch.rand(4, 1, 28, 28), max_degrees=-1.0)
    with pytest.raises(ValueError, match="a and b"):
        angular_distance(z, z[:, :5])
    with pytest.raises(ValueError, match="f_a and f_p and f_n"):
        triplet_loss(z, z, z[:2], margin=0.1)
    labels = torch.arange(4)
    with pytest.raises(ValueError, match="y_anchor"):
        hardest_negative(z, z, labels[:3], labels)
    with pytest.raises(ValueError, match="y_pool"):
        hardest_negative(z, z, labels, labels[:2])
    with pytest.raises(ValueError, match="anchor and pool"):
        hardest_negative(z, z[:, :5], labels, labels)
    with pytest.raises(ValueError, match="layer"):
        tla_loss(0.1, layer=0)
    model, x, y = random_cnn
    with pytest.raises(ValueError, match="nn.Sequential"):
        tla_loss(0.1, steps=1)(Plain(model), x, y)
    with pytest.raises(ValueError, match="layer"):
        tla_loss(0.1, steps=1, layer=len(model))(model, x, y)
    with pytest.raises(ValueError, match="alpha"):
        trades_loss(1.0, 0.1, alpha=0.0)
    with pytest.raises(ValueError, match="pixels"):
        trades_attack(model, x + 2, 0.1)
    with pytest.raises(ValueError, match="pixels"):
        cure_regularizer(0.1)(model, x - 1, y)
    with pytest.raises(ValueError, match="pixels"):
        error_decomposition(model, x * 3 + 1, y, lambda m, a, b: a)
    with pytest.raises(ValueError, match="batch sizes differ"):
        error_decomposition(model, x, y[:1], lambda m, a, b: a)


def test_error_decomposition_masks_agree_with_the_rates(random_cnn):
    model, x, y = random_cnn
    flip = lambda m, a, b: 1 - a  # noqa: E731  (an "attack" that changes many predictions)
    d = error_decomposition(model, x, y, flip)
    assert d["clean_correct"].shape == d["robust_correct"].shape == y.shape
    assert d["natural"] == pytest.approx(1 - d["clean_correct"].float().mean().item())
    assert d["robust"] == pytest.approx(1 - d["robust_correct"].float().mean().item())
    assert d["robust"] == pytest.approx(d["natural"] + d["boundary"])
    assert 0 <= d["robust"] <= 1
    assert not (d["robust_correct"] & ~d["clean_correct"]).any()
