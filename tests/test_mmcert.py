"""MMCert (course_lib.certify.mmcert): the certificate on hand-checked cases, exact enumeration
against every attacker on a tiny input, coverage by simulation, the ablation edge, bad input."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
import torch
from scipy.stats import binom
from torch import nn

from course_lib.certify import mmcert as M


def test_delta_hand_checked():
    # C(9,2)/C(10,2) = 36/45 = 4/5 and C(5,3)/C(6,3) = 10/20 = 1/2: Delta = 1 - 2/5 = 3/5
    assert M.unaffected_probability((10, 6), (2, 3), (1, 1)) == Fraction(2, 5)
    assert M.delta((10, 6), (2, 3), (1, 1)) == pytest.approx(0.6, abs=1e-15)
    # k = 1: a draw touches one of r changed features with probability r / n
    assert M.delta((100,), (1,), (7,)) == pytest.approx(0.07, abs=1e-15)
    assert M.delta((10, 6), (2, 3), (0, 0)) == 0.0
    grid = M.delta_grid((10, 6), (2, 3), range(3), range(2))
    assert grid.shape == (3, 2) and grid[1, 1] == pytest.approx(0.6)


def test_never_certifies_what_ablation_cannot_protect():
    # r_i >= n_i - k_i + 1: every draw can see a changed feature, Delta = 1
    n, k = (10, 6), (4, 2)
    for r in [(7, 0), (0, 5), (10, 6)]:
        assert M.delta(n, k, r) == 1.0
        assert not M.certified(torch.tensor([1.0]), torch.tensor(M.delta(n, k, r))).any()
    assert M.delta(n, k, (6, 4)) < 1.0  # the last protected counts
    # and certified(p) is exactly p - Delta > 1/2
    p = torch.tensor([0.5, 0.7, 0.95])
    ok = M.certified(p, torch.tensor([0.0, 0.2, 0.3]))  # (3, 3)
    assert ok.tolist() == [[False, False, False], [True, False, False], [True, True, True]]


def _all_draws(n: int, k: int):
    return [set(c) for c in itertools.combinations(range(n), k)]


def test_delta_bounds_every_attack_exactly():
    """Enumerate every sub-sample of a tiny binary two-modality input and every attacker that
    changes r_i features: no class probability moves by more than Delta."""
    n, k, r = (4, 3), (2, 1), (1, 1)
    gen = torch.Generator().manual_seed(0)
    table = torch.randint(0, 3, (2**8,), generator=gen)  # a random classifier of the kept bits

    def f(x1, x2, d1, d2):  # the base classifier sees kept values and their positions
        code = sum(x1[j] << j for j in d1) + 16 * sum(x2[j] << j for j in d2)
        return int(table[(code + 37 * min(d1) + 11 * min(d2)) % 256])

    def probs(x1, x2):
        draws = [(d1, d2) for d1 in _all_draws(n[0], k[0]) for d2 in _all_draws(n[1], k[1])]
        votes = torch.bincount(torch.tensor([f(x1, x2, *d) for d in draws]), minlength=3)
        return votes.double() / len(draws)

    x1, x2 = [1, 0, 1, 1], [0, 1, 1]
    p = probs(x1, x2)
    bound, worst = M.delta(n, k, r), 0.0
    for s1 in itertools.combinations(range(n[0]), r[0]):
        for s2 in itertools.combinations(range(n[1]), r[1]):
            a1 = [1 - v if j in s1 else v for j, v in enumerate(x1)]
            a2 = [1 - v if j in s2 else v for j, v in enumerate(x2)]
            worst = max(worst, float((probs(a1, a2) - p).abs().max()))
    assert worst <= bound + 1e-12
    assert worst > 0  # the attacker does move the vote


class MarkedFirst(nn.Module):
    """Class 0 iff the kept feature of modality 1 is marked (value 1): with k_1 = 1 and m of n_1
    features marked, p_0 = m / n_1 exactly, and changing r_1 marked features gives exactly
    (m - r_1) / n_1 = p_0 - Delta: the certificate is tight for this classifier."""

    def __init__(self, n1: int):
        super().__init__()
        self.n1 = n1

    def forward(self, z):  # (rows, 2 (n1 + n2))
        s = z[:, : self.n1].sum(1)  # the kept values of modality 1
        return torch.stack([s - 0.5, torch.zeros_like(s)], dim=1)


def test_coverage_by_simulation():
    """p_0 = 0.6; an attack on r_1 = 10 of n_1 = 100 features brings it to 0.5 exactly (no strict
    majority), so any certificate at r = (10, 0) is wrong. It must happen in <= alpha of runs."""
    n, k, m, alpha, reps = (100, 8), (1, 2), 60, 0.05, 400
    x1 = torch.zeros(reps, n[0])
    x1[:, :m] = 1
    x2 = torch.rand(reps, n[1], generator=torch.Generator().manual_seed(1))
    cert = M.MMCert(MarkedFirst(n[0]), 2, n, k)
    pred, p_lower = cert.certify([x1, x2], 200, alpha, generator=torch.Generator().manual_seed(2))
    assert (pred[pred >= 0] == 0).all()
    wrong = M.certified(p_lower, torch.tensor(M.delta(n, k, (10, 0)))).sum().item()
    assert binom.sf(wrong - 1, reps, alpha) > 1e-3  # failures consistent with rate <= alpha
    # and the certificate is not vacuous: r_1 = 5 (truth: 0.55 > 1/2) is certified often
    right = M.certified(p_lower, torch.tensor(M.delta(n, k, (5, 0)))).float().mean().item()
    assert right > 0.1


def test_masks_exact_count_and_uniform():
    gen = torch.Generator().manual_seed(0)
    m = M.subsample_masks(20_000, 10, 3, gen)
    assert m.shape == (20_000, 10) and (m.sum(1) == 3).all()
    assert torch.allclose(m.float().mean(0), torch.full((10,), 0.3), atol=0.015)
    per_row = M.subsample_masks(3, 10, torch.tensor([1, 5, 10]), gen)
    assert per_row.sum(1).tolist() == [1, 5, 10]


def test_ablate_hides_dropped_values():
    x = torch.rand(4, 6)
    m = M.subsample_masks(4, 6, 2, torch.Generator().manual_seed(0))
    a = M.ablate([x], [m], fill=0.0)  # (4, 12)
    b = M.ablate([x + (~m) * 0.3], [m], fill=0.0)  # change only dropped features
    assert torch.equal(a, b) and torch.equal(a[:, 6:], m.float())
    for bad in (torch.inf, torch.nan):  # an attacker's inf/NaN on dropped features stays hidden
        c = M.ablate([torch.where(m, x, torch.full_like(x, bad))], [m], fill=0.0)
        assert torch.equal(a, c)


def test_attack_changes_exactly_r_features():
    x = [torch.rand(3, 10), torch.rand(3, 6)]
    cert = M.MMCert(MarkedFirst(10), 2, (10, 6), (2, 2))
    adv = M.l0_random_search(cert, x, torch.zeros(3, dtype=torch.long), (2, 1), 4, 8)
    assert ((adv[0] != x[0]).sum(1) == 2).all() and ((adv[1] != x[1]).sum(1) == 1).all()


def test_bad_input():
    model = MarkedFirst(5)
    with pytest.raises(ValueError, match="k\\[0\\]"):
        M.MMCert(model, 2, (5, 4), (0, 1))
    with pytest.raises(ValueError, match="k\\[1\\]"):
        M.MMCert(model, 2, (5, 4), (1, 5))
    with pytest.raises(ValueError, match="r\\[1\\]"):
        M.delta((5, 4), (1, 1), (0, -1))
    with pytest.raises(ValueError, match="r\\[0\\]"):
        M.delta((5, 4), (1, 1), (6, 0))
    cert = M.MMCert(model, 2, (5, 4), (1, 1))
    xs = [torch.rand(2, 5), torch.rand(2, 4)]
    for alpha in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="alpha"):
            cert.certify(xs, 10, alpha)
    with pytest.raises(ValueError, match="n_samples"):
        cert.certify(xs, 0, 0.01)
    with pytest.raises(ValueError, match="xs"):
        cert.certify([torch.rand(2, 5)], 10, 0.01)
