"""Robust overfitting: the per-epoch history, the learning-rate drops and early stopping."""

import pytest
import torch

from course_lib.data import TensorLoader
from course_lib.defenses.robust_overfitting import (
    piecewise_lr,
    robust_evaluator,
    train_with_history,
)
from course_lib.models import mlp
from course_lib.train import cross_entropy_loss


def test_piecewise_lr_drops_tenfold_at_half_and_three_quarters():
    lrs = piecewise_lr(0.1, 8)
    assert lrs == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
    assert piecewise_lr(1.0, 3, milestones=()) == [1.0] * 3


def _toy():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, generator=g)
    y = (x[:, 0] > x[:, 1]).long()
    return x, y


class ScriptedScores:
    """An evaluate() that returns scripted validation scores and records the weights it saw."""

    def __init__(self, scores):
        self.scores, self.seen = list(scores), []

    def __call__(self, model):
        self.seen.append({k: v.clone() for k, v in model.state_dict().items()})
        e = len(self.seen) - 1
        return {"val": self.scores[e], "test": 1 - self.scores[e]}


def test_history_has_one_row_per_epoch_and_keeps_the_best_validation_weights():
    torch.manual_seed(0)
    x, y = _toy()
    model = mlp(2, (8,), 2)
    scores = ScriptedScores([0.2, 0.5, 0.9, 0.4, 0.9, 0.1])  # best at epoch 2 (first of ties)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    lrs = piecewise_lr(0.5, 6)
    loader = TensorLoader(x, y, 16)
    h = train_with_history(model, loader, cross_entropy_loss, optimizer, lrs, scores)
    assert set(h.metrics) == {"loss", "val", "test"}
    assert all(len(v) == 6 for v in h.metrics.values())
    assert h.lr == lrs and h.best_epoch == 2
    for k, v in h.best_state.items():  # the weights evaluated after epoch 2, not the last ones
        assert torch.equal(v, scores.seen[2][k])
    assert not all(torch.equal(v, model.state_dict()[k]) for k, v in h.best_state.items())
    assert optimizer.param_groups[0]["lr"] == lrs[-1]  # the schedule was applied


def test_robust_evaluator_scores_each_split_in_eval_mode_and_restores_the_mode():
    x, y = _toy()
    model = mlp(2, (8,), 2)
    modes = []

    def attack(m, xb, yb):
        modes.append(m.training)
        return xb

    model.train()
    accs = robust_evaluator({"a": (x, y), "b": (x[:10], y[:10])}, attack)(model)
    assert set(accs) == {"a", "b"} and all(0 <= v <= 1 for v in accs.values())
    assert modes and not any(modes) and model.training
    with torch.no_grad():  # identity attack = clean accuracy
        clean = (model(x).argmax(1) == y).float().mean().item()
    assert accs["a"] == pytest.approx(clean)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="lr"):
        piecewise_lr(0.0, 5)
    with pytest.raises(ValueError, match="epochs"):
        piecewise_lr(0.1, 0)
    with pytest.raises(ValueError, match="milestones"):
        piecewise_lr(0.1, 5, milestones=(1.5,))
    with pytest.raises(ValueError, match="splits"):
        robust_evaluator({}, lambda m, a, b: a)
    x, y = _toy()
    model = mlp(2, (8,), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = TensorLoader(x, y, 16)
    with pytest.raises(ValueError, match="lrs"):
        train_with_history(model, loader, cross_entropy_loss, opt, [], ScriptedScores([0.1]))
    with pytest.raises(ValueError, match="lrs"):
        train_with_history(model, loader, cross_entropy_loss, opt, [0.1, -1], ScriptedScores([0.1]))
    with pytest.raises(ValueError, match="select"):
        train_with_history(
            model, loader, cross_entropy_loss, opt, [0.1], ScriptedScores([0.1]), select="nope"
        )


def test_long_run_module_reloads_a_history_of_any_length():
    """The zoo builds the module before loading the cached file: its history buffers must take
    the cached length (otherwise every load would look stale and retrain)."""
    from course_lib.zoo.robust_overfitting import RECIPES

    build = RECIPES["mnist_ro_long"].build
    trained = build()
    trained.history = torch.rand(7, 4)
    trained.lr = torch.rand(7)
    trained.best_epoch = torch.tensor(3)
    fresh = build()
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.history, trained.history) and int(fresh.best_epoch) == 3


def _tiny_settings(**changes):
    from course_lib.zoo.robust_overfitting import RECIPES

    s = dict(RECIPES["mnist_ro_gen_4x_pseudo"].settings["quick"])
    s.update(n_train=20, n_val=10, n_eval=10, steps=1, eval_steps=1, epochs=2, gen_epochs=2)
    s.update(steps_per_epoch=2, batch=10, teacher_epochs=1, pool_batch=15, **changes)
    return s


def test_long_run_recipe_records_one_history_row_per_epoch():
    from course_lib.zoo.robust_overfitting import METRICS, RECIPES

    recipe = RECIPES["mnist_ro_long"]
    run = recipe.build()
    torch.manual_seed(0)
    recipe.train(run, _tiny_settings(epochs=3))
    assert run.history.shape == (3, len(METRICS)) and run.lr.shape == (3,)
    assert 0 <= int(run.best_epoch) < 3
    assert ((run.history[:, 1:] >= 0) & (run.history[:, 1:] <= 1)).all()


def test_generated_data_recipe_runs_with_a_ddpm_and_pseudo_labels(monkeypatch, tmp_path):
    """The full profile's path (a DDPM from the zoo, unconditional + the teacher's labels) on a
    tiny DDPM, so that it is exercised without a GPU."""
    from course_lib import zoo
    from course_lib.ddpm import DDPM
    from course_lib.models import small_cnn
    from course_lib.zoo.robust_overfitting import RECIPES

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    tiny = zoo.Recipe(
        build=lambda: DDPM(T=3, width=8),
        train=RECIPES["mnist_ro_ddpm"].train,
        settings={p: _tiny_settings(ddpm_steps=2, ddpm_batch=4) for p in ("quick", "full")},
    )
    monkeypatch.setitem(zoo.RECIPES, "mnist_ro_ddpm", tiny)
    model = small_cnn(1, 10, 28)
    before = [p.clone() for p in model.parameters()]
    torch.manual_seed(0)
    RECIPES["mnist_ro_gen_4x_pseudo"].train(model, _tiny_settings(generator="ddpm"))
    assert zoo.cache_path("mnist_ro_ddpm", "quick").exists()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
