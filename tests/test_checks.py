"""The guardrails of ``robustness_sanity``: each one passes on a sound model and fires on a model
built to trip it; the accuracy intervals have the coverage they claim."""

import math

import pytest
import torch
from torch import nn

from course_lib.attacks import margin_loss, square_attack
from course_lib.checks import (
    accuracy_interval,
    expect,
    restart_gain,
    robustness_sanity,
    with_interval,
)
from course_lib.threat import perturbation_norm

FIRST_FOUR = [
    "gradients informative",
    "FGSM never stronger than PGD",
    "accuracy non-increasing in eps",
    "unbounded attack succeeds",
]


class Quantise(nn.Module):
    """A 'defense' that rounds pixels to ``levels + 1`` grey levels: zero gradient almost
    everywhere. With 255 levels the forward pass is almost the identity on MNIST: only the gradient
    is lost."""

    def __init__(self, levels):
        super().__init__()
        self.levels = levels

    def forward(self, x):
        return torch.round(x * self.levels) / self.levels


class OffLatticeSaturation(nn.Module):
    """Logits of ``base`` times ``1 + 1e6 * mean(r^2)``, r = distance of 255 x to the 8-bit grid.
    On the digits (exactly on the grid) it is ``base``: FGSM from there works. PGD's random start
    leaves the grid, the logits blow up, the softmax saturates and the cross-entropy gradient is
    exactly zero: PGD never moves. Scaling logits changes no prediction."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, x):
        r = x * 255 - torch.round(x * 255)
        return self.base(x) * (1 + 1e6 * r.pow(2).flatten(1).mean(1, keepdim=True))


class Mean(nn.Module):
    """Two logits ``(m(s), 0)`` of the mean shift ``s = mean(x - 0.5)``; class 0 while ``m > 0``."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        margin = self.m((x - 0.5).flatten(1).mean(1))
        return torch.stack([margin, torch.zeros_like(margin)], 1)


def narrow_trap(s):
    """Fooled only for s within 0.005 of 0.065: PGD-10's steps at eps = 0.1 jump over the trap,
    PGD-100's small steps settle in it; at eps = 0.06 every step ends in it."""
    return 1 - 2 / (1 + ((s - 0.065) / 0.005) ** 2)


def one_sided(s):
    """Fooled only by pushing s up to eps = 0.1; a random start with s < 0 climbs the other way."""
    return 1 - 1000 * torch.relu(s) ** 2 - 10 * torch.relu(-s) ** 2


def grey_images(n=100):
    return torch.full((n, 1, 28, 28), 0.5), torch.zeros(n, dtype=torch.long)


def run(model, x, y, eps_grid, **kwargs):
    return {r.name: r for r in robustness_sanity(model, x, y, eps_grid, **kwargs)}


def test_expect_passes_and_fails(capsys):
    expect(1 < 2, "one is less than two")
    assert "✓ one is less than two" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="check failed: two is less than one"):
        expect(2 < 1, "two is less than one")


def test_every_guardrail_passes_a_plain_model(mnist_model, mnist):
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    results = robustness_sanity(
        mnist_model, x, y, [0.0, 0.05, 0.1, 0.2], steps=10, source_model=mnist_model
    )
    assert [r.name for r in results][:4] == FIRST_FOUR and len(results) == 8
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_zero_gradients_trip_gradient_free_and_transfer_checks(mnist_model, mnist, capsys):
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    masked = nn.Sequential(Quantise(255), mnist_model).eval()
    results = run(masked, x, y, [0.0, 0.2], steps=5, long_steps=10, source_model=mnist_model)
    assert not results["gradients informative"].passed  # round() has a zero gradient
    assert not results["gradient-free search no stronger"].passed  # Square Attack needs none
    assert not results["transfer attack no stronger"].passed  # PGD on the model behind it
    assert not results["unbounded attack succeeds"].passed
    assert "suspicious" in capsys.readouterr().out


def test_fgsm_beats_pgd_when_random_starts_saturate(mnist_model, mnist):
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    model = OffLatticeSaturation(mnist_model).eval()
    results = run(model, x, y, [0.0, 0.2], steps=5, long_steps=10)
    assert results["gradients informative"].passed  # informative on the digits themselves
    assert not results["FGSM never stronger than PGD"].passed


def test_a_trap_trips_the_monotonicity_and_step_checks():
    x, y = grey_images()
    results = run(Mean(narrow_trap).eval(), x, y, [0.0, 0.06, 0.1], steps=10, eps_check=0.1)
    assert not results["accuracy non-increasing in eps"].passed  # 0.00 at 0.06, 1.00 at 0.1
    assert not results["more steps lower accuracy little"].passed  # PGD-10 1.00, PGD-100 0.00


def test_a_one_sided_weakness_trips_the_restart_check():
    torch.manual_seed(0)
    x, y = grey_images()
    results = run(Mean(one_sided).eval(), x, y, [0.0, 0.1], steps=10, long_steps=10, eps_check=0.1)
    assert not results["restarts lower accuracy little"].passed  # about 0.5 -> 0.125


def test_a_constant_classifier_trips_the_unbounded_attack():
    x, y = grey_images(50)
    constant = Mean(lambda s: 1 + 0 * s).eval()
    results = run(constant, x, y, [0.0, 0.1], steps=2, long_steps=2)
    assert not results["unbounded attack succeeds"].passed
    assert not results["gradients informative"].passed


def test_sanity_for_l2_and_bad_grids(mnist_model, mnist):
    x, y = mnist.x_test[:60], mnist.y_test[:60]
    results = robustness_sanity(
        mnist_model, x, y, eps_grid=[0.0, 1.0, 2.0], norm="l2", steps=10, long_steps=20
    )
    assert [r.name for r in results if not r.passed] == []
    assert "FGSM never stronger than PGD" not in [r.name for r in results]  # l_inf only
    with pytest.raises(ValueError, match="eps_grid"):
        robustness_sanity(mnist_model, x, y, eps_grid=[])
    with pytest.raises(ValueError, match="norm"):
        robustness_sanity(mnist_model, x, y, eps_grid=[0.1], norm="l1")


def test_restarts_never_raise_accuracy_across_chunks(mnist_model, mnist):
    x, y = mnist.x_test[:300], mnist.y_test[:300]
    for seed in range(3):
        torch.manual_seed(seed)
        one, more = restart_gain(mnist_model, x, y, 0.08, steps=5, restarts=3, batch_size=64)
        assert more <= one  # exact: the restarts extend the very same first run, chunk by chunk


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
def test_square_attack_stays_in_the_ball_and_lowers_the_margin(mnist_model, mnist, norm, eps):
    torch.manual_seed(0)
    x, y = mnist.x_test[:50], mnist.y_test[:50]
    x_adv = square_attack(mnist_model, x, y, eps, queries=100, norm=norm)
    assert (perturbation_norm(x_adv, x, norm) <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        before, after = margin_loss(mnist_model(x), y), margin_loss(mnist_model(x_adv), y)
    assert after.mean() < before.mean() - 1  # a real search, not a random perturbation
    assert torch.equal(square_attack(mnist_model, x, y, 0.0), x)


def test_margin_loss_is_negative_exactly_on_mistakes():
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    assert margin_loss(logits, torch.tensor([0, 0])).tolist() == [1.0, -3.0]


def test_accuracy_interval_reference_values_and_coverage():
    # Clopper-Pearson 95% for 93/100 (statsmodels' proportion_confint(93, 100, method="beta"))
    low, high = accuracy_interval(0.93, 100)
    assert (low, high) == pytest.approx((0.86108, 0.97134), abs=1e-4)
    assert accuracy_interval(0.0, 50)[0] == 0.0 and accuracy_interval(1.0, 50)[1] == 1.0
    assert with_interval(0.93, 100) == "0.93 [0.86, 0.97]"
    gen = torch.Generator().manual_seed(0)
    for p, n in [(0.5, 100), (0.93, 200), (0.99, 400)]:
        k = torch.binomial(torch.full((2000,), float(n)), torch.full((2000,), p), generator=gen)
        covered = [accuracy_interval(float(kk) / n, n) for kk in k]
        rate = sum(lo <= p <= hi for lo, hi in covered) / len(covered)
        assert rate >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / 2000)  # conservative by design
    with pytest.raises(ValueError, match="acc"):
        accuracy_interval(1.2, 10)
