"""The soft smoothed classifier and its training losses: MACER against a direct computation,
its edge cases (saturated softmax, no eligible sample), Gaussian augmentation, and the attack
model SoftSmoothed."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import softmax
from scipy.stats import norm

from course_lib.attacks import pgd
from course_lib.certify.soft_smoothing import (
    SoftSmoothed,
    gaussian_augmentation_loss,
    macer_loss,
    macer_terms,
    noise_augmentation_loss,
    noisy_logits,
    smooth_adv,
    vote_under_attack,
)
from course_lib.models import mlp
from course_lib.threat import perturbation_norm


def _macer_by_hand(z, y, sigma, beta, gamma):
    """MACER's terms computed point by point with NumPy/SciPy (float64)."""
    loss_cls = loss_rob = 0.0
    kept = []
    for i in range(z.shape[0]):
        p_bar = softmax(z[i], axis=1).mean(0)
        loss_cls -= np.log(p_bar[y[i]] + 1e-10)
        p_beta = softmax(beta * z[i], axis=1).mean(0)
        order = np.argsort(-p_beta)
        xi = norm.ppf(p_beta[order[0]]) - norm.ppf(p_beta[order[1]])
        ok = order[0] == y[i] and np.isfinite(xi) and xi <= gamma
        kept.append(bool(ok))
        if ok:
            loss_rob += sigma / 2 * (gamma - xi)
    return loss_cls, loss_rob, kept


def _hand_built_logits():
    z = np.zeros((4, 3, 3))  # (B, k, K)
    z[0] = [[0.3, 0.1, 0.0], [0.2, 0.15, 0.0], [0.4, 0.0, 0.1]]  # correct, small radius: kept
    z[1] = [[0.0, 0.5, 0.1], [0.1, 0.4, 0.0], [0.0, 0.6, 0.2]]  # top class is not y: dropped
    z[2] = [[0.9, 0.0, 0.0], [0.8, 0.1, 0.0], [1.0, 0.0, 0.1]]  # xi > gamma: hinge inactive
    z[3] = [[60.0, 0.0, 0.0], [55.0, 0.0, 1.0], [70.0, 0.0, 0.0]]  # saturated: xi = inf
    return z, np.array([0, 0, 0, 0])


def test_macer_terms_match_a_direct_computation():
    z, y = _hand_built_logits()
    sigma, beta, gamma = 0.25, 16.0, 8.0
    expected_cls, expected_rob, expected_kept = _macer_by_hand(z, y, sigma, beta, gamma)
    assert expected_kept == [True, False, False, False]  # each case does what its comment says
    logits = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss_cls, loss_rob, mask = macer_terms(logits, torch.tensor(y), sigma, beta, gamma)
    assert mask.tolist() == expected_kept
    assert loss_cls.item() == pytest.approx(expected_cls, rel=1e-9)
    assert loss_rob.item() == pytest.approx(expected_rob, rel=1e-9) and loss_rob.item() > 0


def test_macer_is_finite_on_saturated_softmax_and_on_batches_without_eligible_points():
    z, y = _hand_built_logits()
    for rows, labels in [([3], [0]), ([1], [0]), ([0, 1, 2, 3], [2, 2, 2, 2])]:
        logits = torch.tensor(z[rows], dtype=torch.float32, requires_grad=True)
        loss_cls, loss_rob, mask = macer_terms(logits, torch.tensor(labels), 0.25, 16.0, 8.0)
        assert not mask.any() and loss_rob.item() == 0.0
        (loss_cls + 12.0 * loss_rob).backward()
        assert torch.isfinite(logits.grad).all()


def test_macer_robustness_gradient_pushes_the_radius_up():
    """A gradient step on L_rob alone raises xi (the soft radius) of the kept point."""
    z, y = _hand_built_logits()
    logits = torch.tensor(z[:1], dtype=torch.float64, requires_grad=True)
    _, loss_rob, _ = macer_terms(logits, torch.tensor(y[:1]), 0.25, 16.0, 8.0)
    loss_rob.backward()
    with torch.no_grad():
        _, after, _ = macer_terms(logits - 0.01 * logits.grad, torch.tensor(y[:1]), 0.25, 16.0, 8.0)
    assert after.item() < loss_rob.item()


def test_macer_loss_trains_end_to_end():
    torch.manual_seed(0)
    model = mlp(2, (16,), 2)
    x, y = torch.rand(32, 2), torch.randint(0, 2, (32,))
    loss = macer_loss(sigma=0.25, k=8)(model, x, y)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_noisy_logits_groups_the_copies_of_each_input():
    model = torch.nn.Identity()
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    z = noisy_logits(model, x, sigma=1e-6, k=5)  # (B, k, K)
    assert z.shape == (2, 5, 2)
    assert torch.allclose(z[0], torch.zeros(5, 2), atol=1e-4)
    assert torch.allclose(z[1], torch.ones(5, 2), atol=1e-4)


def test_gaussian_augmentation_adds_noise_of_the_given_sigma():
    torch.manual_seed(0)
    model = mlp(2, (8,), 2)
    x, y = torch.rand(64, 2), torch.randint(0, 2, (64,))
    tiny = gaussian_augmentation_loss(1e-8)(model, x, y)
    assert tiny.item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-5)
    seen = []
    gaussian_augmentation_loss(0.5)(lambda v: seen.append(v) or model(v), x, y)
    assert (seen[0] - x).std().item() == pytest.approx(0.5, rel=0.15)


def test_soft_smoothed_returns_log_probabilities_and_can_be_attacked():
    torch.manual_seed(0)
    base = mlp(2, (16,), 3).eval()
    soft = SoftSmoothed(base, sigma=0.1, k=32)
    x, y = torch.rand(8, 2), torch.randint(0, 3, (8,))
    assert torch.allclose(soft(x).exp().sum(1), torch.ones(8), atol=1e-5)
    x_adv = pgd(soft, x, y, eps=0.1, steps=5, norm="l2")
    assert (perturbation_norm(x_adv, x, "l2") <= 0.1 + 1e-5).all()


@pytest.mark.parametrize(
    "factory,kwargs,name",
    [
        (gaussian_augmentation_loss, dict(sigma=0.0), "sigma"),
        (macer_loss, dict(sigma=-0.1), "sigma"),
        (macer_loss, dict(sigma=0.25, k=0), "k"),
        (macer_loss, dict(sigma=0.25, gamma=0.0), "gamma"),
        (macer_loss, dict(sigma=0.25, beta=0.0), "beta"),
        (macer_loss, dict(sigma=0.25, lam=-1.0), "lam"),
    ],
)
def test_losses_reject_bad_arguments(factory, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        factory(**kwargs)


def test_smooth_adv_respects_per_sample_budgets_and_lowers_the_soft_vote():
    torch.manual_seed(0)
    base = mlp(2, (32,), 2).eval()
    x = torch.rand(16, 2) * 0.6 + 0.2
    y = base(x).argmax(1)
    eps = torch.linspace(0.0, 0.3, 16)
    x_adv = smooth_adv(base, x, y, sigma=0.05, eps=eps, steps=10, k=16)
    assert (perturbation_norm(x_adv, x, "l2") <= eps + 1e-5).all()
    assert torch.equal(x_adv[0], x[0])  # eps = 0 does not move
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    soft = SoftSmoothed(base, 0.05, k=4096)
    torch.manual_seed(1)
    before = soft(x).gather(1, y[:, None]).mean()
    after = soft(x_adv).gather(1, y[:, None]).mean()
    assert after < before


@pytest.mark.parametrize("eps", [-0.1, float("nan"), torch.tensor([0.1, -0.1])])
def test_smooth_adv_rejects_bad_budgets(eps):
    base = mlp(2, (8,), 2)
    with pytest.raises(ValueError, match="^eps "):
        smooth_adv(base, torch.rand(2, 2), torch.tensor([0, 1]), 0.1, eps)


def test_noise_augmentation_uses_the_smoothing_noise():
    from course_lib.certify.noise_shapes import SmoothUniformL1

    torch.manual_seed(0)
    model = mlp(2, (8,), 2)
    x, y = torch.rand(256, 2), torch.randint(0, 2, (256,))
    seen = []
    noise = SmoothUniformL1(None, 2, lam=0.2)
    noise_augmentation_loss(noise)(lambda v: seen.append(v) or model(v), x, y)
    delta = seen[0] - x
    assert delta.abs().max() <= 0.2 and delta.abs().max() > 0.15  # uniform on [-0.2, 0.2]


def test_vote_under_attack_stays_above_half_inside_a_certified_radius():
    from course_lib.certify.smoothing import Smooth

    torch.manual_seed(0)
    base = torch.nn.Linear(2, 2)  # class 1 iff x_0 > 1/2: the boundary is a known line
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        base.bias.copy_(torch.tensor([0.5, -0.5]))
    smooth = Smooth(base, 2, 0.1)
    x = torch.rand(32, 2) * 0.4 + 0.3
    classes, radii = smooth.certify_batch(x, 100, 2000, 0.001, 4000)
    ok = classes >= 0
    inside = vote_under_attack(smooth, x[ok], classes[ok], radii[ok], 0.999, 2000, 4000, k=16)
    assert inside.shape == (int(ok.sum()),)
    assert (inside >= 0.5 - 4 * 0.5 / 2000**0.5).all()
    far = vote_under_attack(smooth, x[ok], classes[ok], radii[ok], 3.0, 2000, 4000, k=16)
    assert far.mean() < inside.mean()  # the attack has teeth outside the radius
