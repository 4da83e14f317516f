import pytest
import torch
from torch import nn

from course_lib.checks import expect, restart_gain, robustness_sanity


class RoundInput(nn.Module):
    """A 'defense' that quantises pixels to 4 levels: its gradient is zero almost everywhere."""

    def forward(self, x):
        return torch.round(x * 3) / 3


def test_expect_passes_and_fails(capsys):
    expect(1 < 2, "one is less than two")
    assert "✓ one is less than two" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="check failed: two is less than one"):
        expect(2 < 1, "two is less than one")


def test_sanity_passes_a_plain_model(mnist_model, mnist):
    x, y = mnist.x_test[:200], mnist.y_test[:200]
    results = robustness_sanity(mnist_model, x, y, eps_grid=[0.0, 0.05, 0.1, 0.2], steps=10)
    assert len(results) == 5
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_sanity_flags_masked_gradients(mnist_model, mnist, capsys):
    x, y = mnist.x_test[:200], mnist.y_test[:200]
    masked = nn.Sequential(RoundInput(), mnist_model).eval()
    results = {r.name: r for r in robustness_sanity(masked, x, y, [0.0, 0.1, 0.2], steps=10)}
    assert not results["gradients informative"].passed  # round() has a zero gradient
    assert "suspicious" in capsys.readouterr().out


def test_sanity_for_l2_and_bad_grids(mnist_model, mnist):
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    results = robustness_sanity(mnist_model, x, y, eps_grid=[0.0, 1.0, 2.0], norm="l2", steps=10)
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
