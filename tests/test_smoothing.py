"""Randomized smoothing (Cohen et al. 2019): closed forms, coverage by simulation, soundness on
linear classifiers (where the smoothed classifier is the base classifier and the true robust
radius is known), reference values, and argument checks."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import beta as beta_dist
from scipy.stats import binomtest, norm

from course_lib.certify.smoothing import (
    ABSTAIN,
    Smooth,
    binomial_test_half,
    clopper_pearson_lower,
    clopper_pearson_upper,
    radius_cap,
    radius_two_sided,
)


class Linear(torch.nn.Module):
    """Two-class linear classifier: class 1 iff w.x + b > 0."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = torch.as_tensor(w, dtype=torch.float32), float(b)

    def forward(self, x):
        z = x.flatten(1) @ self.w + self.b  # (B,)
        return torch.stack([-z, z], 1)


class Coin(torch.nn.Module):
    """Class 1 iff the first coordinate exceeds 1/2: at x_0 = 1/2, symmetric noise gives p = 1/2."""

    def forward(self, x):
        z = x[:, 0] - 0.5
        return torch.stack([-z, z], 1)


def _distance_to_plane(x, w, b):
    return abs(float(x @ torch.as_tensor(w) + b)) / float(torch.as_tensor(w).norm())


# ----- reference values and statistics ---------------------------------------------------------


def test_p_A_lower_reference_value_and_radius_cap():
    p = float(clopper_pearson_lower(torch.tensor([100_000]), 100_000, 1e-3)[0])
    assert p == pytest.approx(0.99993092, abs=5e-9)
    assert norm.ppf(p) == pytest.approx(3.8115, abs=1e-4)
    assert radius_cap(0.5, 100_000, 1e-3) == pytest.approx(0.5 * norm.ppf(p), rel=1e-12)
    # the cap grows with n: fewer samples cannot certify large radii
    caps = [radius_cap(1.0, n, 1e-3) for n in (100, 1_000, 10_000, 100_000)]
    assert caps == sorted(caps)
    assert caps[1:3] == pytest.approx([2.46, 3.20], abs=0.01)


def test_clopper_pearson_matches_the_beta_quantiles_and_edges():
    n_A = torch.tensor([0, 1, 37, 500, 999, 1000])
    lower = clopper_pearson_lower(n_A, 1000, 0.01)
    assert lower[0] == 0 and (lower.diff() > 0).all()
    assert float(lower[2]) == pytest.approx(beta_dist.ppf(0.01, 37, 964), rel=1e-12)
    upper = clopper_pearson_upper(n_A, 1000, 0.01)
    assert upper[-1] == 1 and (upper >= n_A / 1000).all() and (lower <= n_A / 1000).all()


@pytest.mark.parametrize("p,alpha", [(0.5, 0.01), (0.9, 0.01), (0.99, 0.01), (0.9, 0.05)])
def test_clopper_pearson_coverage_by_simulation(p, alpha):
    rng = np.random.default_rng(0)
    trials, n = 200_000, 200
    n_A = rng.binomial(n, p, size=trials)
    failures = (clopper_pearson_lower(torch.as_tensor(n_A), n, alpha).numpy() > p).mean()
    assert failures <= alpha + 3 * math.sqrt(alpha / trials)  # P(bound > p) <= alpha


def test_binomial_test_matches_scipy():
    for k, m in [(510, 1000), (500, 1000), (530, 1000), (60, 100), (7, 7), (5, 9)]:
        assert binomial_test_half(k, m) == pytest.approx(binomtest(k, m, 0.5).pvalue, rel=1e-9)


def test_reusing_selection_samples_breaks_coverage_but_the_split_does_not():
    """At a tie (p_A = p_B = 1/2), any radius > 0 is a false certificate. Choosing the class
    with the same samples that estimate it doubles the failure rate; CERTIFY's split keeps it
    below alpha."""
    torch.manual_seed(0)
    alpha, n, trials = 0.01, 1000, 20_000
    smooth = Smooth(Coin(), num_classes=2, sigma=0.1)
    x = torch.full((trials, 2), 0.5)
    _, radius = smooth.certify_batch(x, n0=10, n=n, alpha=alpha, batch_size=500_000)
    split_failures = (radius > 0).float().mean().item()

    votes = smooth.counts(x, n, batch_size=500_000)  # reuse: argmax and n_A from the same votes
    reuse_lower = clopper_pearson_lower(votes.max(1).values, n, alpha)
    reuse_failures = (reuse_lower > 0.5).double().mean().item()

    se = math.sqrt(alpha / trials)
    assert split_failures <= alpha + 3 * se
    assert reuse_failures > alpha + 5 * se  # ~0.018 measured


# ----- PREDICT and CERTIFY decisions with fixed votes ------------------------------------------


def _with_votes(monkeypatch, smooth, *votes):
    """Make ``smooth.counts`` return the given vote vectors, one per call."""
    queue = [torch.tensor([v]) for v in votes]
    monkeypatch.setattr(smooth, "counts", lambda x, num, batch_size: queue.pop(0))


def test_predict_abstains_on_a_510_490_split(monkeypatch):
    smooth = Smooth(Coin(), 2, sigma=0.25)
    _with_votes(monkeypatch, smooth, [490, 510])
    assert smooth.predict(torch.full((2,), 0.5), n=1000, alpha=0.001) == ABSTAIN
    _with_votes(monkeypatch, smooth, [400, 600])
    assert smooth.predict(torch.full((2,), 0.5), n=1000, alpha=0.001) == 1


def test_certify_abstains_exactly_when_p_A_lower_is_below_half(monkeypatch):
    n, alpha, sigma = 1000, 0.001, 0.5
    smooth = Smooth(Coin(), 2, sigma=sigma)
    # smallest n_A whose lower bound reaches 1/2
    n_A = next(k for k in range(n + 1) if clopper_pearson_lower(torch.tensor([k]), n, alpha) >= 0.5)
    _with_votes(monkeypatch, smooth, [10, 90], [n - n_A + 1, n_A - 1])
    assert smooth.certify(torch.zeros(2), 100, n, alpha) == (ABSTAIN, 0.0)
    _with_votes(monkeypatch, smooth, [10, 90], [n - n_A, n_A])
    c, r = smooth.certify(torch.zeros(2), 100, n, alpha)
    p = float(clopper_pearson_lower(torch.tensor([n_A]), n, alpha)[0])
    assert c == 1 and r == pytest.approx(sigma * norm.ppf(p), rel=1e-6)
    # the class comes from the selection votes, the radius from the estimation votes
    _with_votes(monkeypatch, smooth, [90, 10], [0, n])
    assert smooth.certify(torch.zeros(2), 100, n, alpha) == (ABSTAIN, 0.0)


# ----- soundness and tightness on linear classifiers -------------------------------------------


def test_counts_attribute_every_sample_to_its_input_across_chunks():
    smooth = Smooth(Coin(), 2, sigma=1e-4)
    x = torch.tensor([[0.2, 0.0], [0.9, 0.0], [0.1, 0.0], [0.7, 0.0]])
    for batch_size in (1, 7, 13, 10_000):
        votes = smooth.counts(x, 11, batch_size)
        assert votes.tolist() == [[11, 0], [0, 11], [11, 0], [0, 11]]


def test_gaussian_radius_of_a_linear_classifier_is_sound_and_tight():
    """For f(x) = [w.x + b > 0], g = f and p_A = Phi(dist / sigma): the certificate may exceed the
    true distance only with probability alpha, and approaches it as n grows."""
    torch.manual_seed(0)
    w, b, sigma, alpha = torch.tensor([0.6, -0.8, 0.0, 0.3]), -0.05, 0.25, 0.01
    smooth = Smooth(Linear(w, b), 2, sigma)
    x = torch.tensor([0.5, 0.3, 0.5, 0.4])
    dist = _distance_to_plane(x, w, b)
    runs = x.expand(4000, -1).contiguous()
    classes, radii = smooth.certify_batch(runs, n0=50, n=1000, alpha=alpha, batch_size=400_000)
    assert (classes != 0).all()  # a rare unlucky selection abstains, never certifies class 0
    exceed = (radii > dist).float().mean().item()
    assert exceed <= alpha + 3 * math.sqrt(alpha / 4000)
    _, r_large = smooth.certify(x, n0=100, n=200_000, alpha=alpha, batch_size=200_000)
    assert 0.97 * dist <= r_large <= dist * 1.001
    assert radii.mean() < r_large  # more samples, larger certificate


def test_certify_batch_agrees_with_certify():
    torch.manual_seed(0)
    smooth = Smooth(Linear([1.0, 0.0], -0.4), 2, 0.2)
    x = torch.tensor([[0.7, 0.1], [0.1, 0.9], [0.45, 0.5]])
    classes, radii = smooth.certify_batch(x, 100, 50_000, 0.001, batch_size=4096)
    for i in range(3):
        c, r = smooth.certify(x[i], 100, 50_000, 0.001, batch_size=4096)
        assert c == classes[i] and r == pytest.approx(float(radii[i]), abs=0.01)


def test_two_sided_radius_reduces_to_one_sided_and_wins_when_mass_is_spread():
    n, alpha, sigma = 10_000, 0.001, 0.5
    one_sided = sigma * norm.ppf(float(clopper_pearson_lower(torch.tensor([7000]), n, alpha)[0]))
    two_classes = float(
        radius_two_sided(torch.tensor([7000]), torch.tensor([3000]), n, alpha, sigma)[0]
    )
    half_alpha = sigma * norm.ppf(
        float(clopper_pearson_lower(torch.tensor([7000]), n, alpha / 2)[0])
    )
    assert two_classes == pytest.approx(half_alpha, rel=1e-6) and two_classes < one_sided
    spread = float(radius_two_sided(torch.tensor([7000]), torch.tensor([500]), n, alpha, sigma)[0])
    assert spread > 1.5 * one_sided


# ----- argument checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(n0=0), "n0"),
        (dict(n=0), "n"),
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=1.0), "alpha"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_certify_rejects_bad_arguments(kwargs, name):
    smooth = Smooth(Coin(), 2, 0.25)
    args = dict(n0=10, n=100, alpha=0.001, batch_size=10) | kwargs
    with pytest.raises(ValueError, match=rf"^{name} "):
        smooth.certify(torch.full((2,), 0.5), **args)


def test_smooth_rejects_bad_sigma_classes_and_pixels():
    with pytest.raises(ValueError, match="sigma"):
        Smooth(Coin(), 2, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        Smooth(Coin(), 2, -1.0)
    with pytest.raises(ValueError, match="num_classes"):
        Smooth(Coin(), 1, 0.25)
    smooth = Smooth(Coin(), 2, 0.25)
    with pytest.raises(ValueError, match=r"x must hold pixels in \[0, 1\]"):
        smooth.certify(torch.tensor([1.5, 0.0]), 10, 100, 0.001)
    with pytest.raises(ValueError, match="x must"):
        smooth.certify_batch(torch.tensor([[float("nan"), 0.0]]), 10, 100, 0.001)
    with pytest.raises(ValueError, match="n "):
        smooth.predict(torch.full((2,), 0.5), n=0, alpha=0.001)
    with pytest.raises(ValueError, match="alpha"):
        radius_cap(0.25, 100, 1.5)


def test_certificate_from_votes_equals_certify_batch():
    torch.manual_seed(0)
    smooth = Smooth(Linear([1.0, 0.0], -0.4), 2, 0.2)
    x = torch.tensor([[0.7, 0.1], [0.1, 0.9], [0.41, 0.5]])
    torch.manual_seed(3)
    classes, radii = smooth.certify_batch(x, 100, 5000, 0.001, batch_size=10_000)
    torch.manual_seed(3)
    c_A = smooth.counts(x, 100, 10_000).argmax(1)
    n_A = smooth.counts(x, 5000, 10_000).gather(1, c_A[:, None])[:, 0]
    again = smooth.certificate(c_A, n_A, 5000, 0.001)
    assert torch.equal(again[0], classes) and torch.equal(again[1], radii)


# ----- by construction (moved here from the notebooks' check cells, where they proved nothing) ---


@pytest.mark.parametrize("n", [100, 500, 1000])
def test_no_radius_exceeds_the_cap_and_unanimous_votes_reach_it(n):
    smooth = Smooth(Linear([1.0, 0.0], -0.4), 2, 0.25)
    n_A = torch.arange(0, n + 1)  # every possible vote count
    classes, radii = smooth.certificate(torch.zeros_like(n_A), n_A, n, 0.001)
    cap = radius_cap(0.25, n, 0.001)
    assert (radii <= cap + 1e-6).all() and radii[-1] == pytest.approx(cap, rel=1e-6)
    # the largest radius of a unanimous vote is the cap, proportional to sigma
    assert radius_cap(0.5, n, 0.001) == pytest.approx(2 * cap, rel=1e-12)
    assert radius_cap(0.25, 500, 0.001) == pytest.approx(0.25 * 2.205, abs=1e-3)
