"""Plots and widgets. Imports the core of ``course_lib``; the core never imports ``viz``."""

from __future__ import annotations

import inspect

from .plotly_twin import slider_figure
from .plots import (
    BoundaryView,
    accuracy_vs_eps,
    boundary_grid,
    decision_boundary,
    draw_attack,
    image_grid,
)
from .widgets import LiveDemo, slider

__all__ = [
    "BoundaryView",
    "LiveDemo",
    "accuracy_vs_eps",
    "boundary_grid",
    "decision_boundary",
    "draw_attack",
    "image_grid",
    "show_source",
    "slider",
    "slider_figure",
]


def show_source(obj) -> None:
    """Display the source code of a function or class, syntax-highlighted, where reading the
    implementation is the lesson."""
    from IPython.display import Code, display

    display(Code(inspect.getsource(obj), language="python"))
