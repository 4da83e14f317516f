"""Plotly twins of the widgets: figures whose sliders work on the static site, where no kernel runs.

Every value of the slider is computed in advance and stored in the figure; moving the slider only
toggles which traces are visible (and, optionally, updates the title), which plotly.js does in the
browser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def slider_figure(
    values: Sequence[float],
    make_traces: Callable[[float], list],
    label: str,
    layout: dict | None = None,
    background: Sequence = (),
    step_layout: Callable[[float], dict] | None = None,
    labels: Sequence[str] | None = None,
):
    """A plotly figure with one slider step per value, entirely precomputed.

    ``make_traces(v)`` returns the plotly traces for value ``v`` (the same number for every ``v``);
    ``background`` traces stay visible at every step; ``step_layout(v)`` may return layout changes
    for step ``v`` (a title, annotations); ``labels`` replaces the numbers shown on the slider
    (e.g. ``"γ=4, λ=16"`` for runs indexed 0, 1, ...). Everything is stored in the figure and
    the slider only toggles visibility, so it keeps working on the static site where no kernel
    runs.
    """
    import plotly.graph_objects as go

    groups = [make_traces(v) for v in values]
    per_step = len(groups[0])
    if any(len(g) != per_step for g in groups):
        raise ValueError("make_traces must return the same number of traces for every value")
    fig = go.Figure(list(background))
    fig.update_traces(visible=True)  # the background is visible at every step
    for i, traces in enumerate(groups):
        for trace in traces:
            trace.visible = i == 0
            fig.add_trace(trace)
    n_bg = len(background)
    steps = []
    for i, v in enumerate(values):
        visible = [True] * n_bg + [j // per_step == i for j in range(per_step * len(values))]
        extra = step_layout(v) if step_layout else {}
        text = labels[i] if labels is not None else f"{v:g}"
        steps.append({"method": "update", "label": text, "args": [{"visible": visible}, extra]})
    fig.update_layout(
        sliders=[
            {
                "active": 0,
                "steps": steps,
                "currentvalue": {"prefix": f"{label} = "},
                "pad": {"t": 30},
            }
        ],
        **(layout or {}),
    )
    if step_layout:
        fig.update_layout(step_layout(values[0]))
    return fig
