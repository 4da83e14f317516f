import math

import pytest
import torch

from course_lib.defenses.las_at import (
    LearnableAttackStrategyAT,
    StrategyNet,
    pgd_strategy,
    reinforce_loss,
    sample_strategy,
    smoothed_cross_entropy,
)
from course_lib.threat import perturbation_norm

CHOICES = {"eps": [0.05, 0.1, 0.2], "steps": [1, 3], "alpha": [0.01, 0.02, 0.05, 0.1]}


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_reinforce_step_raises_log_prob_for_positive_reward_and_lowers_it_for_negative(sign):
    torch.manual_seed(0)
    net = StrategyNet(CHOICES)
    x = torch.rand(16, 1, 28, 28)
    actions, log_prob = sample_strategy(net, x)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    optimizer.zero_grad()
    reinforce_loss(log_prob, sign * 1.0).backward()
    optimizer.step()

    def log_prob_of(actions):
        logits = net(x)
        return sum(
            torch.distributions.Categorical(logits=logits[h]).log_prob(actions[h]) for h in actions
        )

    with torch.no_grad():
        after = log_prob_of(actions)
    change = (after - log_prob.detach()).mean()
    assert sign * change > 0
    # a reward of 0 leaves the policy where it was (no gradient at all)
    optimizer.zero_grad()
    reinforce_loss(log_prob_of(actions), 0.0).backward()
    assert all(p.grad is None or (p.grad == 0).all() for p in net.parameters())


def test_reinforce_loss_gradient_is_reward_times_score():
    # one categorical with logits theta: d/dtheta log softmax(theta)_a = onehot(a) - softmax
    theta = torch.tensor([[0.3, -1.0, 0.5]], requires_grad=True)
    a = torch.tensor([2])
    log_prob = torch.distributions.Categorical(logits=theta).log_prob(a)
    reinforce_loss(log_prob, 2.5).backward()
    score = torch.nn.functional.one_hot(a, 3).float() - theta.detach().softmax(1)
    assert torch.allclose(theta.grad, -2.5 * score)


def test_sampler_returns_one_valid_choice_per_sample_and_log_prob():
    torch.manual_seed(1)
    net = StrategyNet(CHOICES)
    x = torch.rand(200, 1, 28, 28)
    actions, log_prob = sample_strategy(net, x)
    assert set(actions) == set(CHOICES)
    for h, values in CHOICES.items():
        assert actions[h].shape == (200,) and actions[h].dtype == torch.long
        assert actions[h].min() >= 0 and actions[h].max() < len(values)
    assert log_prob.shape == (200,) and (log_prob <= 0).all()
    # the joint log-probability is at least that of the least likely joint action
    assert (log_prob >= -math.log(3 * 2 * 4) * 20).all()
    assert torch.equal(net.steps_values, torch.tensor([1, 3]))
    # all values occur: a fresh strategy network is close to uniform
    for h, values in CHOICES.items():
        assert torch.bincount(actions[h], minlength=len(values)).min() > 0


def test_pgd_strategy_respects_each_samples_radius_and_step_count(mnist_model, mnist):
    x, y = mnist.x_test[:30], mnist.y_test[:30]
    eps_i = torch.tensor([0.05, 0.1, 0.3]).repeat(10)
    steps_i = torch.tensor([1, 2, 5]).repeat_interleave(10)
    alpha_i = torch.full((30,), 0.02)
    x_adv = pgd_strategy(mnist_model, x, y, eps_i, steps_i, alpha_i, init_eps=0.0)
    dist = perturbation_norm(x_adv, x, "linf")
    assert (dist <= eps_i + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    # from the clean point, k steps of size alpha move at most k * alpha
    assert (dist <= steps_i * 0.02 + 1e-6).all()
    # one step without a random start is FGSM with step alpha inside the radius
    from course_lib.attacks import input_gradient

    g = input_gradient(mnist_model, x[:10], y[:10]).sign()
    expected = torch.min(
        torch.max(x[:10] + 0.02 * g, x[:10] - eps_i[:10, None, None, None]),
        x[:10] + eps_i[:10, None, None, None],
    ).clamp(0, 1)
    assert torch.allclose(x_adv[:10], expected, atol=1e-6)


def test_smoothed_cross_entropy_matches_the_reference_formula():
    torch.manual_seed(0)
    logits, y = torch.randn(5, 10), torch.tensor([0, 3, 9, 1, 1])
    soft = torch.full((5, 10), 0.3 / 9)
    soft[torch.arange(5), y] = 0.7
    reference = -(soft * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(smoothed_cross_entropy(logits, y, 0.7), reference)
    plain = torch.nn.functional.cross_entropy(logits, y)
    assert torch.allclose(smoothed_cross_entropy(logits, y, 1.0), plain)


def test_las_at_loss_trains_records_choices_and_rewards(random_cnn, mnist):
    model = random_cnn[0]
    torch.manual_seed(0)
    x, y = mnist.x_test[:32], mnist.y_test[:32]
    loss_fn = LearnableAttackStrategyAT(CHOICES, 0.1, policy_every=2, policy_lr=0.01)
    before = [p.detach().clone() for p in loss_fn.net.parameters()]
    for _ in range(2):
        loss = loss_fn(model, x, y)
        loss.backward()
    assert torch.isfinite(loss)
    assert len(loss_fn.rewards) == 1
    r1, r2, r3, r = loss_fn.rewards[0]
    assert 0 <= r1 <= 10 and 0 <= r2 <= 4 and 0 <= r3 <= 2 and math.isclose(r, r1 + r2 + r3)
    assert any(not torch.equal(b, p) for b, p in zip(before, loss_fn.net.parameters(), strict=True))
    assert all(c.sum() == 64 for c in loss_fn.counts.values())


@pytest.mark.parametrize(
    "bad, name",
    [
        ({**CHOICES, "eps": []}, "choices['eps']"),
        ({**CHOICES, "alpha": [0.1, -0.01]}, "choices['alpha']"),
        ({**CHOICES, "eps": [0.0]}, "choices['eps']"),
        ({**CHOICES, "steps": [0, 2]}, "choices['steps']"),
        ({**CHOICES, "steps": [1.5]}, "choices['steps']"),
        ({"eps": [0.1], "steps": [1]}, "choices"),
        ([0.1, 0.2], "choices"),
    ],
)
def test_bad_choices_raise_value_error_naming_them(bad, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        StrategyNet(bad)
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        LearnableAttackStrategyAT(bad, 0.3)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"eps": 0.0}, "eps"),
        ({"policy_every": 0}, "policy_every"),
        ({"policy_lr": -1.0}, "policy_lr"),
        ({"copy_lr": 0.0}, "copy_lr"),
        ({"weights": (1.0, 4.0)}, "weights"),
        ({"weights": (1.0, -4.0, 2.0)}, "weights"),
        ({"factor": 0.0}, "factor"),
        ({"factor": 1.2}, "factor"),
        ({"baseline_momentum": 1.0}, "baseline_momentum"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    args = {"eps": 0.3, **kwargs}
    with pytest.raises(ValueError, match=name):
        LearnableAttackStrategyAT(CHOICES, **args)


def test_pgd_strategy_rejects_bad_per_sample_arguments(random_cnn):
    model = random_cnn[0]
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    ok = torch.full((4,), 0.1), torch.full((4,), 2), torch.full((4,), 0.05)
    with pytest.raises(ValueError, match="eps_i"):
        pgd_strategy(model, x, y, torch.full((3,), 0.1), *ok[1:], init_eps=0.1)
    with pytest.raises(ValueError, match="steps_i"):
        pgd_strategy(model, x, y, ok[0], torch.zeros(4, dtype=torch.long), ok[2], 0.1)
    with pytest.raises(ValueError, match="init_eps"):
        pgd_strategy(model, x, y, *ok, init_eps=-0.1)
