"""Randomized diversification (Taran et al. 2019): DCT, keys, keyed classifiers, ensemble."""

import pytest
import torch
from scipy.fft import dctn

from course_lib.defenses.diversification import (
    DiversifiedEnsemble,
    KeyedClassifier,
    RandomMember,
    dct2,
    dct_matrix,
    idct2,
    keyed_transform,
    make_key,
    subband_mask,
)
from course_lib.models import small_cnn


def test_dct_is_orthonormal_and_matches_scipy():
    c = dct_matrix(28, torch.float64)
    assert torch.allclose(c @ c.T, torch.eye(28, dtype=torch.float64), atol=1e-12)
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    ours = dct2(x)
    theirs = torch.from_numpy(dctn(x.numpy(), type=2, norm="ortho", axes=(-2, -1)))
    assert torch.allclose(ours, theirs, atol=1e-12)
    assert torch.allclose(idct2(ours), x, atol=1e-12)  # round trip is the identity


@pytest.mark.parametrize("subband", ["d", "h", "v"])
def test_key_twice_is_identity_and_only_the_subband_changes(subband):
    key = make_key(28, subband, torch.Generator().manual_seed(0))
    inside = subband_mask(28, subband)
    assert (key[~inside] == 1).all() and (key[inside] == -1).any() and (key[inside] == 1).any()
    assert not subband_mask(28, subband)[:14, :14].any()  # the low-frequency quadrant is kept
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    once = keyed_transform(x, key.double())
    twice = idct2(dct2(once) * key.double())  # t_k(t_k(x)), once is no longer in [0, 1]
    assert torch.allclose(twice, x, atol=1e-12)
    changed = (dct2(once) - dct2(x)).abs().amax((0, 1)) > 1e-12  # (28, 28)
    assert not changed[~inside].any() and changed[inside & (key == -1)].all()
    assert torch.allclose(once.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1))  # norm kept


def _members() -> list[KeyedClassifier]:
    torch.manual_seed(0)
    return [
        KeyedClassifier(small_cnn().eval(), make_key(28, s, torch.Generator().manual_seed(i)))
        for i, s in enumerate("dhv")
    ]


def test_ensemble_sums_softmax_and_random_member_is_one_member():
    members = _members()
    ensemble = DiversifiedEnsemble(members)
    x = torch.rand(5, 1, 28, 28)
    probs = torch.stack([m(x).softmax(1) for m in members]).mean(0)
    assert torch.allclose(ensemble(x).exp(), probs, atol=1e-6)


def test_random_member_draws_one_member_per_query():
    members = _members()
    ensemble = DiversifiedEnsemble(members)
    n = 600
    x = torch.rand(1, 1, 28, 28).repeat(n, 1, 1, 1)  # the same query n times
    with torch.no_grad():
        out = RandomMember(ensemble, torch.Generator().manual_seed(0))(x)  # (n, 10)
        each = torch.stack([m(x[:1])[0] for m in members])  # (3, 10)
    dist = (out[:, None, :] - each[None]).abs().amax(-1)  # (n, 3)
    assert (dist.amin(1) < 1e-5).all()  # every row is one member's answer
    j = torch.randint(3, (n,), generator=torch.Generator().manual_seed(0))  # the same draws
    with torch.no_grad():
        stacked = torch.stack([m(x) for m in members])[j, torch.arange(n)]  # (n, 10)
    assert torch.allclose(out, stacked, atol=1e-6)
    one = RandomMember(ensemble, torch.Generator().manual_seed(0))(x[:1])  # members left undrawn
    assert one.shape == (1, 10)
    counts = torch.bincount(dist.argmin(1), minlength=3).float()
    # independent uniform draws per query: each count is Binomial(n, 1/3), within 5 std
    assert ((counts - n / 3).abs() <= 5 * (n * 2 / 9) ** 0.5).all()


def test_bad_input_raises():
    with pytest.raises(ValueError, match="subband"):
        make_key(28, "ll")
    with pytest.raises(ValueError, match="subband"):
        make_key(1, "ll")  # the choice is checked first
    with pytest.raises(ValueError, match="size"):
        make_key(1, "d")
    with pytest.raises(ValueError, match="x"):
        keyed_transform(torch.rand(2, 1, 28, 27), torch.ones(28, 28))
    with pytest.raises(ValueError, match="x"):
        keyed_transform(torch.rand(2, 1, 28, 28) + 1, torch.ones(28, 28))  # not pixels
    with pytest.raises(ValueError, match="x"):
        dct2(torch.rand(2, 1, 28, 27))
    with pytest.raises(ValueError, match="coeffs"):
        idct2(torch.rand(2, 1, 27, 28))
    with pytest.raises(ValueError, match="members"):
        DiversifiedEnsemble([])
