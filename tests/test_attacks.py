import pytest
import torch
import torch.nn.functional as F
import torchattacks

from course_lib.attacks import fgsm, pgd, pgd_targeted
from course_lib.threat import perturbation_norm

ATTACKS = {
    "fgsm": lambda m, x, y, eps: fgsm(m, x, y, eps),
    "pgd_linf": lambda m, x, y, eps: pgd(m, x, y, eps, steps=5),
    "pgd_l2": lambda m, x, y, eps: pgd(m, x, y, eps, steps=5, norm="l2"),
    "pgd_l2_restarts": lambda m, x, y, eps: pgd(m, x, y, eps, steps=3, norm="l2", restarts=3),
    "pgd_linf_no_start": lambda m, x, y, eps: pgd(m, x, y, eps, steps=5, random_start=False),
    "pgd_targeted": lambda m, x, y, eps: pgd_targeted(m, x, (y + 1) % 10, eps, steps=5),
}
NORM = {"pgd_l2": "l2", "pgd_l2_restarts": "l2"}


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("eps", [0.03, 0.3, 1.5])
def test_attack_stays_in_ball_and_box(random_cnn, name, eps):
    model, x, y = random_cnn
    x_adv = ATTACKS[name](model, x, y, eps)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (perturbation_norm(x_adv, x, NORM.get(name, "linf")) <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("name", ATTACKS)
def test_eps_zero_returns_x(random_cnn, name):
    model, x, y = random_cnn
    assert torch.equal(ATTACKS[name](model, x, y, 0.0), x)


@pytest.mark.parametrize("name", ATTACKS)
def test_attacks_leave_model_mode_alone(random_cnn, name):
    model, x, y = random_cnn
    model.train()
    ATTACKS[name](model, x, y, 0.1)
    assert model.training
    model.eval()
    ATTACKS[name](model, x, y, 0.1)
    assert not model.training


@pytest.mark.parametrize("eps, alpha, steps", [(8 / 255, 2 / 255, 10), (0.3, 0.01, 40)])
def test_pgd_equals_torchattacks_without_random_start(mnist_model, mnist, eps, alpha, steps):
    x, y = mnist.x_test[:128], mnist.y_test[:128]
    ours = pgd(mnist_model, x, y, eps, alpha=alpha, steps=steps, random_start=False)
    theirs = torchattacks.PGD(mnist_model, eps=eps, alpha=alpha, steps=steps, random_start=False)(
        x, y
    )
    assert torch.equal(ours, theirs)


def test_pgd_finds_higher_loss_than_fgsm(mnist_model, mnist):
    x, y = mnist.x_test[:300], mnist.y_test[:300]
    with torch.no_grad():
        loss_fgsm = F.cross_entropy(mnist_model(fgsm(mnist_model, x, y, 0.1)), y)
        loss_pgd = F.cross_entropy(mnist_model(pgd(mnist_model, x, y, 0.1, steps=20)), y)
    assert loss_pgd > loss_fgsm


def test_restarts_never_lose_a_fooled_sample(mnist_model, mnist):
    x, y = mnist.x_test[:300], mnist.y_test[:300]
    torch.manual_seed(1)
    one = pgd(mnist_model, x, y, 0.08, steps=5)
    torch.manual_seed(1)  # the first climb of the 4-restart run is the same climb as above
    four = pgd(mnist_model, x, y, 0.08, steps=5, restarts=4)
    with torch.no_grad():
        fooled_one = mnist_model(one).argmax(1) != y
        fooled_four = mnist_model(four).argmax(1) != y
    assert (fooled_four | ~fooled_one).all()  # fooled by one restart => fooled by four
    assert fooled_four.sum() >= fooled_one.sum()


def test_targeted_pgd_reaches_its_target(mnist_model, mnist):
    x, y = mnist.x_test[:200], mnist.y_test[:200]
    target = (y + 1) % 10

    def hit_rate(eps):
        with torch.no_grad():
            x_adv = pgd_targeted(mnist_model, x, target, eps, steps=50) if eps else x
            return (mnist_model(x_adv).argmax(1) == target).float().mean().item()

    rates = [hit_rate(eps) for eps in (0.0, 0.1, 0.2, 0.5)]
    assert rates[0] < 0.05  # the clean model almost never predicts y + 1
    assert rates[0] <= rates[1] <= rates[2] <= rates[3]
    assert rates[3] > 0.95  # half the pixel range is enough to reach any target


def test_pgd_drives_a_plain_model_to_zero_at_large_eps(mnist_model, mnist):
    x, y = mnist.x_test[:200], mnist.y_test[:200]
    with torch.no_grad():
        acc = (mnist_model(pgd(mnist_model, x, y, 0.3, steps=40)).argmax(1) == y).float().mean()
    assert acc < 0.05


BAD_INPUT = [
    (dict(eps=-0.1), "eps"),
    (dict(eps=float("nan")), "eps"),
    (dict(alpha=0.0), "alpha"),
    (dict(alpha=-1.0), "alpha"),
    (dict(steps=-1), "steps"),
    (dict(steps=2.5), "steps"),
    (dict(norm="l1"), "norm"),
    (dict(restarts=0), "restarts"),
]


@pytest.mark.parametrize("kwargs, argument", BAD_INPUT)
def test_pgd_rejects_bad_arguments(random_cnn, kwargs, argument):
    model, x, y = random_cnn
    kwargs = {"eps": 0.1, **kwargs}
    with pytest.raises(ValueError, match=argument):
        pgd(model, x, y, **kwargs)


@pytest.mark.parametrize("attack", [fgsm, pgd, pgd_targeted])
def test_attacks_reject_pixels_outside_unit_box(random_cnn, attack):
    model, x, y = random_cnn
    with pytest.raises(ValueError, match=r"x must hold pixels in \[0, 1\]"):
        attack(model, x * 2, y, 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(model, x - 0.5, y, 0.1)


@pytest.mark.parametrize("attack", [fgsm, pgd, pgd_targeted])
def test_attacks_reject_labels_that_are_not_class_indices(random_cnn, attack):
    model, x, y = random_cnn
    for bad in (y.int(), y.bool(), y.float(), y.view(-1, 1), y - 20):
        with pytest.raises(ValueError, match="class indices"):
            attack(model, x, bad, 0.1)


@pytest.mark.parametrize("attack", [fgsm, pgd, pgd_targeted])
def test_attacks_reject_mismatched_batches_and_empty_input(random_cnn, attack):
    model, x, y = random_cnn
    with pytest.raises(ValueError, match="batch sizes differ"):
        attack(model, x, y[:-1], 0.1)
    with pytest.raises(ValueError, match="non-empty"):
        attack(model, x[:0], y[:0], 0.1)
    with pytest.raises(ValueError, match="eps"):
        attack(model, x, y, -0.5)
