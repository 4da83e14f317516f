"""FAT for TRADES (Zhang et al. 2020, ``FAT_for_TRADES.py``): early-stopped KL ascent."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.defenses.fat import fat_trades_loss, fat_trades_tau, trades_early_stopped
from course_lib.defenses.trades import trades_attack, trades_objective
from course_lib.threat import project_linf
from course_lib.train import predict


def test_tau_at_least_k_equals_trades_attack(mnist_model, mnist):
    x, y = mnist.x_test[:64], mnist.y_test[:64]
    torch.manual_seed(5)
    ours = trades_early_stopped(mnist_model, x, y, 0.2, steps=6, tau=6)
    torch.manual_seed(5)
    reference = trades_attack(mnist_model, x, 0.2, steps=6)
    assert torch.equal(ours, reference)


def test_tau_zero_stops_each_sample_at_its_first_misclassified_iterate(mnist_model, mnist):
    x, y = mnist.x_test[:128], mnist.y_test[:128]
    eps, K = 0.3, 12
    alpha = 2.5 * eps / K  # the default step of K steps, fixed for the shorter replays below
    torch.manual_seed(0)
    x_adv = trades_early_stopped(mnist_model, x, y, eps, steps=K, tau=0)
    # the iterates of the run that never stops (tau >= K), with the same random start
    torch.manual_seed(0)
    iterates = [project_linf(x + 0.001 * torch.randn_like(x), x, eps)]
    for k in range(1, K + 1):
        torch.manual_seed(0)
        iterates.append(trades_early_stopped(mnist_model, x, y, eps, k, tau=K, alpha=alpha))
    wrong = torch.stack([predict(mnist_model, xk) != y for xk in iterates[:K]])  # (K, B)
    first = torch.where(wrong.any(0), wrong.float().argmax(0), torch.full_like(y, K))  # (B,)
    expected = torch.stack(iterates)[first, torch.arange(len(y))]  # (B, 1, 28, 28)
    assert (first < K).sum() > 10  # enough digits are stopped early for the test to mean much
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-6)
    assert (x_adv - x).abs().amax() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_fat_trades_tau_schedule_matches_the_reference_epochs():
    taus = [fat_trades_tau(e, 85) for e in range(85)]
    assert taus[:31] == [0] * 31 and taus[31:51] == [1] * 20
    assert taus[51:71] == [2] * 20 and taus[71:] == [3] * 14


def test_fat_trades_loss_is_the_trades_objective_at_the_early_stopped_point(random_cnn):
    model, x, y = random_cnn
    torch.manual_seed(1)
    loss = fat_trades_loss(6.0, 0.1, steps=3, tau=1)(model, x, y)
    torch.manual_seed(1)
    x_adv = trades_early_stopped(model, x, y, 0.1, 3, 1)
    assert torch.allclose(loss, trades_objective(model, x, x_adv, y, 6.0))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    kl = F.kl_div(F.log_softmax(model(x_adv), 1), F.softmax(model(x), 1), reduction="batchmean")
    assert float(kl) >= 0


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"beta": -1.0}, "beta"),
        ({"eps": -0.1}, "eps"),
        ({"steps": 0}, "steps"),
        ({"tau": -1}, "tau"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    args = {"beta": 6.0, "eps": 0.1, "steps": 3, "tau": 0, **kwargs}
    with pytest.raises(ValueError, match=name):
        fat_trades_loss(**args)
