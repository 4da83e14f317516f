"""Live ipywidgets demos that work in JupyterLab, Voila, nbval and on the static site.

:class:`LiveDemo` wires a plain ``render(**values)`` function to a few controls. The callback fills
an ``ipywidgets.Output`` from the kernel side (``out.outputs = ...``), which nbval and nbclient
capture too, and records how long each update took. Tests call ``demo.update()`` directly or move
a control (``demo.controls["eps"].value = 0.2``) and read ``demo.result``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import Image, display
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .plots import canvas_to_png


class LiveDemo:
    """Controls + an output area, re-rendered by ``render(**values)`` whenever a control moves.

    ``render`` returns a matplotlib figure (shown as a PNG, see :func:`figure_to_png`), a plotly
    figure, or any displayable object; it may also
    return ``(figure, result)`` where ``result`` (e.g. an accuracy) is kept in ``demo.result`` for
    check cells. ``demo.timings_ms`` holds the duration of every update.
    """

    def __init__(
        self, render: Callable, controls: Mapping[str, widgets.ValueWidget], title: str = ""
    ):
        self.render, self.controls = render, dict(controls)
        self.out = widgets.Output()
        self.result = None
        self.timings_ms: list[float] = []
        for control in self.controls.values():
            control.observe(self.update, names="value")
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        self.box = widgets.VBox([*header, widgets.HBox(list(self.controls.values())), self.out])
        self.update()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def update(self, change=None) -> None:
        """Re-render into the output area (the widget callback)."""
        start = time.perf_counter()
        shown = self.render(**self.values())
        if isinstance(shown, tuple):
            shown, self.result = shown
        if isinstance(shown, Figure):
            shown = figure_to_png(shown)
        self.out.outputs = ()
        self.out.append_display_data(shown)
        self.timings_ms.append(1000 * (time.perf_counter() - start))

    def _ipython_display_(self) -> None:
        display(self.box)


def figure_to_png(fig: Figure) -> Image:
    """Rasterise a matplotlib figure into a PNG ``Image`` and close it.

    About twice as fast as the inline backend (which draws twice for its tight bounding box and
    compresses hard): one Agg draw, then a light PNG compression.
    """
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    plt.close(fig)  # shown once in the Output, not again at the end of the cell
    return canvas_to_png(canvas)


def slider(
    value: float, low: float, high: float, step: float, description: str, fmt: str = ".3f"
) -> widgets.FloatSlider:
    """A float slider that updates only on release (``continuous_update=False``), so a drag
    costs one render instead of dozens."""
    return widgets.FloatSlider(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description,
        readout_format=fmt,
        continuous_update=False,
    )
