import pytest
import torch

from course_lib.attacks import pgd
from course_lib.data import load_toy2d
from course_lib.defenses.adversarial_training import fgsm_at_loss, general_at, pgd_attack
from course_lib.defenses.fat import fat_loss, fat_tau, pgd_early_stopped
from course_lib.models import mlp
from course_lib.threat import perturbation_norm
from course_lib.train import predict


def test_pgd_k_tau_with_tau_k_equals_pgd(mnist_model, mnist):
    x, y = mnist.x_test[:64], mnist.y_test[:64]
    torch.manual_seed(3)
    ours = pgd_early_stopped(mnist_model, x, y, 0.1, steps=5, tau=5)
    torch.manual_seed(3)
    reference = pgd(mnist_model, x, y, 0.1, steps=5)
    assert torch.equal(ours, reference)


def _first_misclassified_iterate(model, x, y, eps, steps, alpha):
    """Plain PGD without random start, per sample, stopped at the first misclassified iterate."""
    out = []
    for xi, yi in zip(x, y, strict=True):
        xi, yi, x_adv = xi[None], yi[None], xi[None].clone()
        for _ in range(steps):
            if predict(model, x_adv) != yi:
                break
            x_adv = _one_step(model, x_adv, xi, yi, eps, alpha)
        out.append(x_adv)
    return torch.cat(out)


def _one_step(model, x_adv, x, y, eps, alpha):
    from course_lib.attacks import input_gradient
    from course_lib.threat import project_linf

    return project_linf(x_adv + alpha * input_gradient(model, x_adv, y).sign(), x, eps)


def test_pgd_k_tau_with_tau_zero_stops_at_first_misclassification(mnist_model, mnist):
    x, y = mnist.x_test[:24], mnist.y_test[:24]
    ours = pgd_early_stopped(mnist_model, x, y, 0.15, steps=8, tau=0, random_start=False)
    reference = _first_misclassified_iterate(mnist_model, x, y, 0.15, 8, 2.5 * 0.15 / 8)
    assert torch.allclose(ours, reference, atol=1e-6)
    fooled = predict(mnist_model, ours) != y
    assert fooled.any()  # the test says something
    # a sample misclassified from the start never moves
    wrong_at_start = predict(mnist_model, x) != y
    assert torch.equal(ours[wrong_at_start], x[wrong_at_start])


def test_pgd_k_tau_stays_in_ball_and_budget_is_monotone(mnist_model, mnist):
    x, y = mnist.x_test[:64], mnist.y_test[:64]
    fooled = []
    for tau in (0, 2, 10):
        torch.manual_seed(0)
        x_adv = pgd_early_stopped(mnist_model, x, y, 0.2, steps=10, tau=tau)
        assert (perturbation_norm(x_adv, x, "linf") <= 0.2 + 1e-6).all()
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(mnist_model(x_adv), y)
        fooled.append(loss.item())
    assert fooled[0] <= fooled[2]  # stopping early leaves the loss lower than full PGD


def test_fat_tau_schedule():
    assert [fat_tau(e, 120) for e in (0, 50, 51, 90, 91, 119)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="epochs"):
        fat_tau(0, 0)


def test_fat_and_fgsm_losses_are_differentiable(random_cnn):
    model, x, y = random_cnn
    for loss_fn in (
        fat_loss(0.1, steps=3, tau=1),
        fgsm_at_loss(0.1),
        fgsm_at_loss(0.1, 0.125, True),
    ):
        loss = loss_fn(model, x, y)
        loss.backward()
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert all(p.grad is not None for p in model.parameters())
        model.zero_grad()


def test_general_at_trains_and_calls_back():
    x, y = load_toy2d("moons", n=120, noise=0.1, seed=0)
    torch.manual_seed(0)
    model = mlp(2, (32, 32), 2)
    rounds = []
    general_at(
        model,
        x,
        y,
        pgd_attack(0.03, steps=3),
        3,
        subset=0.5,
        on_round=lambda t, m: rounds.append(t),
    )
    assert rounds == [0, 1, 2]
    assert (predict(model, x) == y).float().mean() > 0.7


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda m, x, y: pgd_early_stopped(m, x, y, 0.1, steps=0), "steps"),
        (lambda m, x, y: pgd_early_stopped(m, x, y, 0.1, tau=-1), "tau"),
        (lambda m, x, y: fat_loss(0.1, tau=-2), "tau"),
        (lambda m, x, y: fat_loss(-0.1), "eps"),
        (lambda m, x, y: fat_loss(0.1, alpha=0.0), "alpha"),
        (lambda m, x, y: fgsm_at_loss(-0.1), "eps"),
        (lambda m, x, y: general_at(m, x, y, pgd_attack(0.1), 1, subset=1.5), "subset"),
        (lambda m, x, y: general_at(m, x, y, pgd_attack(0.1), 0), "rounds"),
    ],
)
def test_bad_arguments_raise(random_cnn, call, argument):
    model, x, y = random_cnn
    with pytest.raises(ValueError, match=argument):
        call(model, x, y)


def test_cat_soft_labels_sum_to_one_and_are_one_hot_at_zero():
    from course_lib.defenses.cat import cat_soft_labels

    y = torch.tensor([0, 3, 9, 2])
    eps_i = torch.tensor([0.0, 0.05, 0.1, 0.0])
    soft = cat_soft_labels(y, eps_i, 10, c=5.0)
    assert torch.allclose(soft.sum(1), torch.ones(4))
    assert (soft >= 0).all()
    onehot = torch.nn.functional.one_hot(y, 10).float()
    assert torch.equal(soft[[0, 3]], onehot[[0, 3]])
    assert torch.all(soft[[1, 2]].gather(1, y[[1, 2], None]).squeeze(1) >= 1 - 5.0 * eps_i[[1, 2]])


def test_cat_budgets_grow_only_when_the_attack_fails_and_stay_capped(mnist_model, mnist):
    from course_lib.defenses.cat import CustomizedAT

    y = mnist.y_test[:64]
    cat = CustomizedAT(y, eps_max=0.05, eta=0.02, c=2.0, steps=3)
    idx = torch.arange(64)
    for _ in range(4):
        before = cat.eps.clone()
        loss = cat(mnist_model, mnist.x_test[:64], idx)
        assert torch.isfinite(loss)
        grew = cat.eps > before
        assert ((cat.eps == before) | grew).all()  # never shrinks
        assert (cat.eps >= 0).all() and (cat.eps <= 0.05 + 1e-7).all()
    assert (cat.eps == 0.05).any()  # robust digits reach the cap
    # digits the model gets wrong at eps_i = 0 never grow
    wrong = predict(mnist_model, mnist.x_test[:64]) != y
    assert (cat.eps[wrong] == 0).all()


def test_cat_rejects_bad_arguments():
    from course_lib.defenses.cat import CustomizedAT

    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="eps_max"):
        CustomizedAT(y, eps_max=-0.1, eta=0.01, c=1.0)
    with pytest.raises(ValueError, match="eta"):
        CustomizedAT(y, eps_max=0.1, eta=0.0, c=1.0)
    with pytest.raises(ValueError, match="c \\* eps_max"):
        CustomizedAT(y, eps_max=0.3, eta=0.01, c=10.0)


def test_cat_soft_labels_and_per_sample_pgd_reject_bad_input(random_cnn):
    from course_lib.defenses.cat import cat_soft_labels, pgd_per_sample_eps

    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="eps_i"):
        cat_soft_labels(y, torch.tensor([0.1, -0.01]), 10, c=1.0)
    with pytest.raises(ValueError, match="c"):
        cat_soft_labels(y, torch.tensor([0.1, 0.0]), 10, c=-1.0)
    with pytest.raises(ValueError, match="c \\* eps_i"):  # no silent clamping
        cat_soft_labels(y, torch.tensor([0.3, 0.0]), 10, c=5.0)
    model, x, yy = random_cnn
    eps_i = torch.full((x.shape[0],), 0.1)
    with pytest.raises(ValueError, match="steps"):
        pgd_per_sample_eps(model, x, yy, eps_i, steps=0)
    with pytest.raises(ValueError, match="eps_i"):
        pgd_per_sample_eps(model, x, yy, -eps_i, steps=2)
