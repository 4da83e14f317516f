"""Pictures of certificates: the radius field agrees with CERTIFY, balls and outlines are drawn
where and as large as the certificates say, and the slider figure takes text labels."""

import numpy as np
import plotly.graph_objects as go
import torch

from course_lib.certify.smoothing import Smooth
from course_lib.viz import slider_figure
from course_lib.viz.certified import (
    CertifiedView,
    ball_outline,
    certified_accuracy_plot,
    certified_balls,
    radius_field,
)


class HalfPlane(torch.nn.Module):
    """Class 1 right of x = 0.5; a parameter so that the field finds the device."""

    def __init__(self):
        super().__init__()
        self.t = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        z = x[:, 0] - self.t
        return torch.stack([-z, z], 1)


def test_radius_field_matches_the_distance_to_a_half_plane():
    torch.manual_seed(0)
    field = radius_field(Smooth(HalfPlane(), 2, 0.1), resolution=21, n0=50, n=20_000, alpha=0.001)
    assert field["pred"].shape == field["radius"].shape == (21, 21)
    distance = np.abs(field["xs"][None, :] - 0.5).repeat(21, 0)  # row = y, column = x
    decided = field["pred"] >= 0
    assert (field["radius"][decided] <= distance[decided] + 1e-6).mean() > 0.99
    far = distance > 0.1
    assert (field["pred"][far] == (field["xs"][None, :] > 0.5).repeat(21, 0)[far]).all()
    assert np.isnan(field["signed"][~decided]).all()
    assert (
        np.sign(field["signed"][decided & (field["radius"] > 0)])
        == np.where(field["pred"] == 1, 1, -1)[decided & (field["radius"] > 0)]
    ).all()


def test_balls_and_outlines_have_the_certified_radii():
    x = np.array([[0.2, 0.2], [0.5, 0.5], [0.8, 0.8]])
    radii, classes = np.array([0.1, 0.0, 0.05]), np.array([0, -1, 1])
    balls = certified_balls(x, radii, classes)
    assert len(balls.get_paths()) == 2  # the abstention draws nothing
    bx, by = ball_outline(x, radii, classes)
    pts = np.stack([bx, by], 1)
    pts = pts[~np.isnan(pts).any(1)]
    d = np.linalg.norm(pts[:, None, :] - x[None, [0, 2], :], axis=2).min(1)
    assert np.allclose(np.sort(np.unique(np.round(d, 6))), [0.05, 0.1])
    bx1, by1 = ball_outline(x, radii, classes, norm="l1")
    l1 = np.abs(np.stack([bx1, by1], 1)[:5] - x[0]).sum(1)
    assert np.allclose(l1, 0.1)  # the diamond's corners are at l1 distance r


def test_certified_view_redraws_to_png_and_the_plot_draws_curves():
    field = {
        "xs": np.linspace(0, 1, 5),
        "ys": np.linspace(0, 1, 5),
        "signed": np.linspace(-1, 1, 25).reshape(5, 5),
    }
    view = CertifiedView(field, torch.rand(4, 2), torch.tensor([0, 1, 0, 1]), vmax=1.0)
    first = view.draw(np.full(4, 0.1), np.array([0, 1, 0, 1]), "a").data
    second = view.draw(np.full(4, 0.3), np.array([0, 1, 0, 1]), "b").data
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first != second
    ax = certified_accuracy_plot([0, 0.5, 1], {"a": torch.tensor([1.0, 0.5, 0.0])})
    assert len(ax.get_lines()) == 1


def test_slider_figure_accepts_text_labels():
    fig = slider_figure([0, 1], lambda i: [go.Scatter(y=[i])], "run", labels=["first", "second"])
    assert [s["label"] for s in fig.layout.sliders[0].steps] == ["first", "second"]
    assert fig.layout.sliders[0].currentvalue.prefix == "run = "  # the slider keeps its name
