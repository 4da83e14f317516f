import subprocess
import sys

import pytest
import torch

from course_lib import config


def test_profile_defaults_to_quick_without_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.profile() == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.profile() == "full"


@pytest.mark.parametrize("value", ["fast", "QUICKER", "1"])
def test_invalid_profile_names_the_variable_and_choices(monkeypatch, value):
    monkeypatch.setenv("COURSE_PROFILE", value)
    with pytest.raises(ValueError, match=r"COURSE_PROFILE must be one of \('quick', 'full'\)"):
        config.profile()


def test_profile_is_case_insensitive_and_settings_differ(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "Full")
    assert config.profile() == "full"
    assert config.settings()["eval_n"] > config.settings("quick")["eval_n"]
    assert config.SETTINGS["quick"].keys() == config.SETTINGS["full"].keys()


def test_device_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert config.device() == torch.device("cpu")


def test_seed_everything_makes_runs_repeat():
    config.seed_everything(7)
    a = torch.rand(3)
    config.seed_everything(7)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ValueError, match="seed"):
        config.seed_everything(-1)


def test_import_has_no_side_effects(tmp_path):
    code = (
        "import sys, course_lib;"
        "heavy = [m for m in ('matplotlib', 'plotly', 'ipywidgets', 'mlxtend')"
        " if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_setup_reports_device_profile_and_sets_plotly_renderer(capsys, monkeypatch):
    import plotly.graph_objects as go
    import plotly.io as pio

    monkeypatch.setenv("COURSE_PROFILE", "quick")
    settings = config.setup()
    assert "device=cpu profile=quick" in capsys.readouterr().out
    assert settings == config.SETTINGS["quick"]
    bundle = pio.renderers[pio.renderers.default].to_mimebundle(go.Figure(go.Bar(y=[1])).to_dict())
    assert "application/vnd.plotly.v1+json" in bundle  # JupyterLab
    assert "Plotly.newPlot" in bundle["text/html"]  # static site
    assert "cdn.plot.ly" not in bundle["text/html"]  # plotly.js is served by the site itself
