import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import pytest
import torch
from IPython.display import Image

from course_lib.models import mlp
from course_lib.viz import (
    BoundaryView,
    LiveDemo,
    accuracy_vs_eps,
    boundary_grid,
    decision_boundary,
    image_grid,
    show_source,
    slider,
    slider_figure,
)


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return mlp(2, (8,), 2).eval(), torch.rand(20, 2), torch.randint(0, 2, (20,))


def test_boundary_grid_matches_the_model(toy):
    model, _, _ = toy
    grid = boundary_grid(model, resolution=30)
    assert grid["pred"].shape == (30, 30) and grid["prob"].shape == (30, 30)
    # entry (row i, column j) is the point (xs[j], ys[i])
    point = torch.tensor([[grid["xs"][7], grid["ys"][3]]])
    assert grid["pred"][3, 7] == model(point).argmax(1).item()


def test_decision_boundary_for_three_classes():
    torch.manual_seed(0)
    model = mlp(2, (8,), 3).eval()
    grid = boundary_grid(model, resolution=40)
    assert grid["num_classes"] == 3 and set(grid["pred"].ravel()) <= {0, 1, 2}
    fig, ax = plt.subplots()
    decision_boundary(grid, torch.rand(5, 2), torch.tensor([0, 1, 2, 0, 1]), ax=ax)
    assert ax.images[0].get_array().max() <= 2  # regions coloured by class, not by confidence
    plt.close(fig)


def test_slider_figure_toggles_one_group_per_step():
    values = [0.1, 0.2, 0.3]
    fig = slider_figure(
        values,
        lambda v: [go.Scatter(y=[v]), go.Scatter(y=[2 * v])],
        "eps",
        background=[go.Scatter(y=[0])],
        step_layout=lambda v: {"title": {"text": f"v={v}"}},
    )
    assert len(fig.data) == 1 + 2 * len(values)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["0.1", "0.2", "0.3"]
    visible = steps[1].args[0]["visible"]
    assert visible == [True, False, False, True, True, False, False]  # background + group 1
    assert steps[2].args[1]["title"]["text"] == "v=0.3"
    assert [t.visible for t in fig.data] == [True, True, True, False, False, False, False]
    with pytest.raises(ValueError, match="same number of traces"):
        slider_figure([1, 2], lambda v: [go.Scatter(y=[0])] * v, "n")


def test_live_demo_calls_render_on_every_change_and_keeps_the_result():
    calls = []

    def render(eps, steps):
        calls.append((eps, steps))
        fig, ax = plt.subplots()
        ax.plot([0, eps])
        return fig, eps * steps

    before = len(plt.get_fignums())
    demo = LiveDemo(render, {"eps": slider(0.1, 0, 1, 0.1, "eps"), "steps": widgets.IntSlider(2)})
    demo.controls["eps"].value = 0.5
    demo.controls["steps"].value = 4
    assert calls == [(0.1, 2), (0.5, 2), (0.5, 4)]
    assert demo.result == 2.0
    assert len(demo.timings_ms) == 3
    assert len(demo.out.outputs) == 1 and "image/png" in demo.out.outputs[0]["data"]
    assert len(plt.get_fignums()) == before  # every figure closed after it was shown


def test_boundary_view_redraws_without_piling_up_artists(toy):
    model, x, y = toy
    view = BoundaryView(boundary_grid(model, 20), x, y)
    n_artists = None
    for eps in [0.05, 0.1, 0.2]:
        png = view.draw(eps, "l2", x + 0.01, title=f"eps={eps}")
        assert isinstance(png, Image) and png.data[:4] == b"\x89PNG"
        count = len(view.ax.get_children())
        assert n_artists is None or count == n_artists
        n_artists = count
    assert view.ax.get_title() == "eps=0.2"


def test_static_figures_build():
    fig = image_grid(
        torch.rand(6, 1, 8, 8),
        [0, 1, 2, 3, 4, 5],
        [0, 1, 2, 0, 0, 0],
        ncols=3,
        row_titles=["a", "b"],
    )
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "3→0" in texts and "a" in texts
    assert [t.get_color() for t in fig.axes[0].texts][:4] == ["black"] * 3 + ["red"]
    plt.close(fig)
    ax = accuracy_vs_eps([0, 0.1], {"PGD": [0.9, 0.1]})
    assert len(ax.lines) == 1
    plt.close(ax.figure)


def test_show_source_displays_the_code(capsys):
    show_source(slider)
    assert "def slider" in capsys.readouterr().out
