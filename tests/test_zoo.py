import inspect

import pytest
import torch

from course_lib import zoo


def _build():
    return torch.nn.Linear(2, 2)


CALLS = []


def _train(model, settings):
    CALLS.append(settings["value"])
    with torch.no_grad():
        model.weight.fill_(settings["value"])


@pytest.fixture
def recipe(monkeypatch, tmp_path):
    """A tiny recipe in a fresh cache folder; returns a function that changes its settings."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    CALLS.clear()

    def install(value=1.0):
        r = zoo.Recipe(
            build=_build,
            train=_train,
            settings={"quick": {"value": value}, "full": {"value": value}},
        )
        monkeypatch.setitem(zoo.RECIPES, "tiny", r)

    install()
    return install


def test_miss_trains_then_hit_loads(recipe):
    first = zoo.load("tiny", profile="quick", device="cpu")
    assert CALLS == [1.0] and zoo.cache_path("tiny", "quick").exists()
    second = zoo.load("tiny", profile="quick", device="cpu")
    assert CALLS == [1.0]  # no retraining
    assert torch.equal(first.weight, second.weight) and not second.training


def test_corrupt_file_is_retrained_with_a_warning(recipe):
    zoo.load("tiny", profile="quick", device="cpu")
    zoo.cache_path("tiny", "quick").write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="corrupt"):
        model = zoo.load("tiny", profile="quick", device="cpu")
    assert CALLS == [1.0, 1.0] and torch.all(model.weight == 1.0)
    zoo.load("tiny", profile="quick", device="cpu")  # and the rewritten file is good again
    assert len(CALLS) == 2


def test_changed_settings_change_the_key_and_retrain(recipe):
    zoo.load("tiny", profile="quick", device="cpu")
    recipe(value=2.0)
    with pytest.warns(UserWarning, match="stale"):
        model = zoo.load("tiny", profile="quick", device="cpu")
    assert CALLS == [1.0, 2.0] and torch.all(model.weight == 2.0)


def test_loading_leaves_the_callers_random_numbers_alone(recipe):
    for _ in range(2):  # a miss (trains) and a hit (loads)
        torch.manual_seed(3)
        expected = torch.rand(3)
        torch.manual_seed(3)
        zoo.load("tiny", profile="quick", device="cpu")
        assert torch.equal(torch.rand(3), expected)


def test_key_depends_on_source_and_settings():
    r = zoo.RECIPES["mnist_cnn"]
    k1 = zoo.recipe_key("mnist_cnn", r, r.settings["quick"])
    assert k1 == zoo.recipe_key("mnist_cnn", r, dict(r.settings["quick"]))
    assert k1 != zoo.recipe_key("mnist_cnn", r, {**r.settings["quick"], "epochs": 11})
    other = zoo.Recipe(build=_build, train=r.train, settings=r.settings)
    assert k1 != zoo.recipe_key("mnist_cnn", other, r.settings["quick"])


def test_writes_are_atomic_and_leave_no_temporary_files(recipe, tmp_path):
    zoo.load("tiny", profile="quick", device="cpu")
    files = [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert files == ["tiny-quick.pt"]
    payload = torch.load(zoo.cache_path("tiny", "quick"), weights_only=True)
    assert set(payload) == {"key", "state_dict"}


def test_unknown_names_list_the_recipes(recipe):
    with pytest.raises(ValueError, match="name must be one of.*mnist_cnn"):
        zoo.load("resnet50")
    with pytest.raises(ValueError, match="profile"):
        zoo.load("tiny", profile="medium")


def test_key_covers_the_builders_a_recipe_builds_with(monkeypatch):
    """A changed architecture builder (e.g. lipschitz_nets.sn_cnn) must retrain its models."""
    recipe = zoo.RECIPES["mnist_sn_cnn_1"]
    settings = recipe.settings["quick"]
    before = zoo.recipe_key("mnist_sn_cnn_1", recipe, settings)

    def other_builder(*args, **kwargs):  # a different body under the same name
        return torch.nn.Linear(1, 1)

    monkeypatch.setattr(zoo.lipschitz_nets, "sn_cnn", other_builder)
    assert zoo.recipe_key("mnist_sn_cnn_1", recipe, settings) != before


def test_key_covers_the_helpers_a_recipe_trains_with(monkeypatch):
    recipe = zoo.RECIPES["mnist_gauss_0.25"]
    settings = recipe.settings["quick"]
    before = zoo.recipe_key("mnist_gauss_0.25", recipe, settings)

    def other_loss(s):  # a changed loss chooser must retrain the model
        return None

    monkeypatch.setattr(zoo.smoothing, "_noise_loss", other_loss)
    assert zoo.recipe_key("mnist_gauss_0.25", recipe, settings) != before


def test_key_covers_the_chapters_training_modules(monkeypatch):
    """A change in the smoothing losses retrains the smoothing recipes and only them."""
    from course_lib.certify import soft_smoothing

    gauss, cnn = zoo.RECIPES["mnist_gauss_0.25"], zoo.RECIPES["mnist_cnn"]

    def keys():
        return (
            zoo.recipe_key("mnist_gauss_0.25", gauss, gauss.settings["quick"]),
            zoo.recipe_key("mnist_cnn", cnn, cnn.settings["quick"]),
        )

    before, real = keys(), inspect.getsource
    monkeypatch.setattr(
        inspect, "getsource", lambda o: real(o) + ("# edited" if o is soft_smoothing else "")
    )
    after = keys()
    assert after[0] != before[0] and after[1] == before[1]


def test_every_chapter_module_contributes_distinct_names():
    names = [n for chapter in zoo.CHAPTERS for n in chapter.RECIPES]
    assert len(names) == len(set(names)) == len(zoo.RECIPES)


def test_two_loads_at_once_train_once(recipe, monkeypatch):
    """Notebooks run side by side (or two kernels of a student) share the training of a model."""
    import threading
    import time

    def slow_train(model, settings):
        time.sleep(0.5)
        _train(model, settings)

    monkeypatch.setitem(
        zoo.RECIPES, "tiny", zoo.Recipe(_build, slow_train, zoo.RECIPES["tiny"].settings)
    )
    threads = [
        threading.Thread(
            target=zoo.load, args=("tiny",), kwargs={"profile": "quick", "device": "cpu"}
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert CALLS == [1.0]


def _fine_tune(model, settings):
    zoo.initial_weights(model, settings)
    CALLS.append(("fine-tune", float(model.weight[0, 0])))
    with torch.no_grad():
        model.weight.add_(settings["step"])


def test_fine_tuned_recipe_starts_from_its_parent_and_retrains_with_it(recipe, monkeypatch):
    child = zoo.Recipe(
        build=_build,
        train=_fine_tune,
        settings={p: {"init": ["tiny", p], "step": 0.5} for p in ("quick", "full")},
    )
    monkeypatch.setitem(zoo.RECIPES, "tiny_ft", child)
    model = zoo.load("tiny_ft", profile="quick", device="cpu")
    assert CALLS == [1.0, ("fine-tune", 1.0)]  # the parent trained first, the child started there
    assert torch.all(model.weight == 1.5)
    key = zoo.recipe_key("tiny_ft", child, child.settings["quick"])
    recipe(value=3.0)  # a changed parent changes the child's key: the child retrains from it
    assert zoo.recipe_key("tiny_ft", child, child.settings["quick"]) != key
    assert torch.all(zoo.load("tiny_ft", profile="quick", device="cpu").weight == 3.5)
