import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from course_lib.apgd import (
    _random_start,
    apgd,
    apgd_run,
    apgd_targeted,
    checkpoints,
    dlr_loss,
    dlr_loss_targeted,
)
from course_lib.attacks import pgd
from course_lib.threat import perturbation_norm
from course_lib.train import predict
from course_lib.worst_case import robust_accuracy_worst_case, standard_attacks

ATTACKS = {
    "apgd_ce_linf": lambda m, x, y, e: apgd(m, x, y, e, steps=10),
    "apgd_dlr_linf": lambda m, x, y, e: apgd(m, x, y, e, loss="dlr", steps=10),
    "apgd_ce_l2": lambda m, x, y, e: apgd(m, x, y, e, steps=10, norm="l2", restarts=2),
    "apgd_t_linf": lambda m, x, y, e: apgd_targeted(m, x, y, e, steps=10, n_target_classes=3),
    "apgd_t_l2": lambda m, x, y, e: apgd_targeted(m, x, y, e, steps=10, norm="l2"),
}


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("eps", [0.05, 2.0])
def test_apgd_stays_in_ball_and_box(random_cnn, name, eps):
    model, x, y = random_cnn
    x_adv = ATTACKS[name](model, x, y, eps)
    norm = "l2" if name.endswith("l2") else "linf"
    assert x_adv.shape == x.shape
    assert (perturbation_norm(x_adv, x, norm) <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("name", ATTACKS)
def test_apgd_eps_zero_returns_x_and_leaves_mode_alone(random_cnn, name):
    model, x, y = random_cnn
    assert torch.equal(ATTACKS[name](model, x, y, 0.0), x)
    model.train()
    ATTACKS[name](model, x, y, 0.1)
    assert model.training
    model.eval()


@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_run_never_weaker_than_its_start(mnist_model, mnist, loss, norm):
    x, y = mnist.x_test[:64], mnist.y_test[:64]
    eps = 0.1 if norm == "linf" else 1.0
    x_start = _random_start(x, eps, norm)
    loss_fn = dlr_loss if loss == "dlr" else (lambda z, t: F.cross_entropy(z, t, reduction="none"))
    run = apgd_run(mnist_model, x, y, eps, x_start, loss_fn, steps=20, norm=norm)
    with torch.no_grad():
        start_loss, best_loss = (
            loss_fn(mnist_model(x_start), y),
            loss_fn(mnist_model(run.x_best), y),
        )
        start_fooled = mnist_model(x_start).argmax(1) != y
    assert (best_loss >= start_loss - 1e-6).all()
    assert torch.allclose(best_loss, run.loss_best, atol=1e-5)
    assert not (start_fooled & run.robust).any()  # a fooled start is never counted robust
    fooled = predict(mnist_model, run.x_best_adv) != y
    assert torch.equal(fooled, ~run.robust)  # x_best_adv fools exactly the non-robust samples


def test_apgd_output_fools_every_sample_it_reports(mnist_model, mnist):
    x, y = mnist.x_test[:64], mnist.y_test[:64]
    torch.manual_seed(0)
    x_adv = apgd(mnist_model, x, y, 0.1, steps=20)
    torch.manual_seed(0)
    run = apgd_run(mnist_model, x, y, 0.1, _random_start(x, 0.1, "linf"), _ce, 20)
    clean_ok = predict(mnist_model, x) == y
    # same start (same seed): the attack fools at least what the run fooled among correct ones
    assert ((predict(mnist_model, x_adv) != y) >= (~run.robust & clean_ok)).all()


def _ce(z, y):
    return F.cross_entropy(z, y, reduction="none")


def paper_checkpoints(n):
    """Croce & Hein (2020), Sec. 3.2: p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); checkpoints w_j = ceil(p_j N)."""
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt > 1.0 + 1e-9:
            break
        p.append(nxt)
    return [round(q * n) - 1 for q in p[1:]]  # 0-based iteration after w_j steps


def test_checkpoint_schedule_for_100_steps():
    expected = paper_checkpoints(100)
    assert expected == [21, 40, 56, 69, 79, 86, 92, 98]
    assert checkpoints(100) == expected
    # a model whose loss never rises: the run checks at exactly those iterations and halves each
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    nn.init.zeros_(model[1].weight)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    run = apgd_run(model, x, y, 0.3, x.clone(), _ce, steps=100)
    assert run.checked_at == expected
    assert torch.allclose(run.eta, torch.full((4,), 2 * 0.3 / 2 ** len(expected)))


def test_dlr_on_fixed_logits():
    z = torch.tensor([[4.0, 1.0, 3.0, 2.0], [4.0, 1.0, 3.0, 2.0]])
    y = torch.tensor([0, 1])
    # y=0 is top: -(4 - 3) / (4 - 2); y=1: -(1 - 4) / (4 - 2)
    assert torch.allclose(dlr_loss(z, y), torch.tensor([-0.5, 1.5]))
    # shift and positive scale invariance
    assert torch.allclose(dlr_loss(3 * z + 7, y), dlr_loss(z, y))


def test_targeted_dlr_on_fixed_logits():
    z = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.0]])
    y, t = torch.tensor([1]), torch.tensor([2])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(1 - 3) / (4 - 1.5)
    assert torch.allclose(dlr_loss_targeted(z, y, t), torch.tensor([0.8]))
    assert torch.allclose(dlr_loss_targeted(2 * z - 5, y, t), torch.tensor([0.8]))


@pytest.mark.parametrize(
    ("loss", "norm", "eps"), [("ce", "linf", 0.06), ("dlr", "linf", 0.06), ("ce", "l2", 1.0)]
)
def test_apgd_matches_torchattacks_at_100_steps(mnist_model, mnist, loss, norm, eps):
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    torch.manual_seed(0)
    ours = (predict(mnist_model, apgd(mnist_model, x, y, eps, loss=loss, norm=norm)) == y).float()
    peer = torchattacks.APGD(
        mnist_model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, steps=100, loss=loss
    )
    theirs = (predict(mnist_model, peer(x, y)) == y).float()
    assert 0.1 < theirs.mean() < 0.95  # the comparison says something
    assert abs(ours.mean() - theirs.mean()) <= 0.02


def test_apgd_targeted_matches_torchattacks_at_100_steps(mnist_model, mnist):
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    torch.manual_seed(0)
    x_ours = apgd_targeted(mnist_model, x, y, 0.06, steps=100, n_target_classes=3)
    peer = torchattacks.APGDT(mnist_model, norm="Linf", eps=0.06, steps=100, n_classes=4)
    ours = (predict(mnist_model, x_ours) == y).float().mean()
    theirs = (predict(mnist_model, peer(x, y)) == y).float().mean()
    assert 0.1 < theirs < 0.95
    assert abs(ours - theirs) <= 0.02


def test_worst_case_never_above_any_single_attack(mnist_model, mnist):
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    attacks = {
        "pgd": lambda m, a, b, e: pgd(m, a, b, e, steps=10),
        **standard_attacks(steps=10, n_target_classes=2),
    }
    torch.manual_seed(0)
    wc = robust_accuracy_worst_case(mnist_model, x, y, 0.06, attacks, batch_size=37)
    assert list(wc.after) == list(attacks)
    values = list(wc.after.values())
    assert all(b <= a for a, b in zip(values, values[1:], strict=False))
    assert wc.accuracy == values[-1] == wc.robust.float().mean().item()
    clean = (predict(mnist_model, x) == y).float().mean().item()
    assert wc.accuracy <= clean
    # a sample counted robust survives every attack when each is rerun on it alone
    kept = wc.robust.nonzero().squeeze(1)
    for attack in attacks.values():
        x_adv = attack(mnist_model, x[kept], y[kept], 0.06)
        assert (predict(mnist_model, x_adv) == y[kept]).float().mean() >= 0.9


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"steps": 0}, "steps"),
        ({"loss": "hinge"}, "loss"),
        ({"norm": "l1"}, "norm"),
        ({"restarts": 0}, "restarts"),
    ],
)
def test_apgd_rejects_bad_arguments(random_cnn, kwargs, argument):
    model, x, y = random_cnn
    with pytest.raises(ValueError, match=argument):
        apgd(model, x, y, 0.1, **kwargs)


def test_bad_input_raises(random_cnn):
    model, x, y = random_cnn
    with pytest.raises(ValueError, match="eps"):
        apgd(model, x, y, -0.1)
    with pytest.raises(ValueError, match="n_target_classes"):
        apgd_targeted(model, x, y, 0.1, n_target_classes=0)
    with pytest.raises(ValueError, match="attacks"):
        robust_accuracy_worst_case(model, x, y, 0.1, {})
    with pytest.raises(ValueError, match="x"):
        apgd(model, x * 2, y, 0.1)


def test_worst_case_when_the_first_attack_fools_everything(random_cnn):
    model, x, y = random_cnn
    attacks = {"always": lambda m, a, b, e: a.flip(0), "never": lambda m, a, b, e: a}
    y = predict(model, x)  # clean accuracy 1
    y_wrong = (y + 1) % 10
    wc = robust_accuracy_worst_case(model, x, y_wrong, 0.1, attacks)
    assert wc.accuracy == 0.0 and wc.after == {"always": 0.0, "never": 0.0}


def test_dlr_losses_reject_too_few_classes(random_cnn):
    z2, y = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="K >= 3"):
        dlr_loss(z2, y)
    with pytest.raises(ValueError, match="K >= 4"):
        dlr_loss_targeted(torch.randn(4, 3), y, (y + 1) % 3)
    binary = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2))
    x = torch.rand(4, 2)
    with pytest.raises(ValueError, match="dlr_loss needs"):
        apgd(binary, x, y, 0.1, loss="dlr", steps=2)
    with pytest.raises(ValueError, match="K >= 4"):
        apgd_targeted(binary, x, y, 0.1, steps=2, n_target_classes=1)


def test_apgd_targeted_rejects_more_targets_than_wrong_classes(random_cnn):
    model, x, y = random_cnn  # 10 classes: at most 9 target classes
    with pytest.raises(ValueError, match="n_target_classes"):
        apgd_targeted(model, x, y, 0.1, steps=2, n_target_classes=10)
