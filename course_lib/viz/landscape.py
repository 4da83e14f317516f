"""Figures of loss landscapes (:mod:`course_lib.landscape`): matplotlib contour maps and plotly
3-D surfaces that rotate in the browser, the static site included (no kernel, no CDN: the site
serves one copy of plotly.js)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .plotly_twin import slider_figure


def linf_diamond(eps: float) -> tuple[list[float], list[float]]:
    """The closed diamond ``|a| + |b| = eps``: the l_inf ball's section with the plane spanned by
    two sign vectors that show all four sign patterns."""
    return [eps, 0.0, -eps, 0.0, eps], [0.0, eps, 0.0, -eps, 0.0]


def landscape_contours(
    a: torch.Tensor,
    b: torch.Tensor,
    surfaces: Mapping[str, torch.Tensor],
    vmax: float | None = None,
    eps: float | None = None,
    xlabel: str = "a (gradient sign)",
    ylabel: str = "b (random)",
    sections: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
):
    """One filled contour map per surface ``(len(b), len(a))``, side by side on a shared colour
    scale (blue: low loss, red: high loss, as in the lecture's figure). ``eps`` draws the
    section of the l_inf ball of that budget with the plane: the diamond ``|a| + |b| <= eps``,
    exact when ``u`` and ``v`` are sign vectors with all four sign patterns among the pixels (see
    :func:`course_lib.landscape.linf_section`). ``sections`` (name -> boundary points ``(a, b)``
    from ``linf_section``) draws each surface's own section instead. Returns the figure."""
    names = list(surfaces)
    vmax = vmax if vmax is not None else max(float(s.max()) for s in surfaces.values())
    fig, axes = plt.subplots(1, len(names), figsize=(3.9 * len(names), 3.4), squeeze=False)
    levels = np.linspace(0, vmax, 21)
    for ax, name in zip(axes[0], names, strict=True):
        z = surfaces[name].clamp(max=vmax).cpu().numpy()
        filled = ax.contourf(a.cpu().numpy(), b.cpu().numpy(), z, levels=levels, cmap="RdBu_r")
        ax.contour(
            a.cpu().numpy(), b.cpu().numpy(), z, levels=levels[::4], colors="k", linewidths=0.4
        )
        if sections is not None:
            ax.plot(*(t.cpu().numpy() for t in sections[name]), "k--", lw=0.8)
        elif eps is not None:
            ax.plot(*linf_diamond(eps), "k--", lw=0.8)
        ax.plot(0, 0, "k*", ms=8)
        ax.set(title=name, xlabel=xlabel, ylabel=ylabel, aspect="equal")
        ax.grid(False)
    fig.colorbar(filled, ax=axes[0].tolist(), shrink=0.85, label=f"loss (clipped at {vmax:.3g})")
    return fig


def landscape_surfaces(
    a: torch.Tensor,
    b: torch.Tensor,
    surfaces: Mapping[str, torch.Tensor],
    labels: Sequence[str] | None = None,
    vmax: float | None = None,
    title: str = "",
):
    """A plotly 3-D surface per entry of ``surfaces``, one slider step each (all precomputed), on
    the same z range so that steps compare. Drag to rotate, scroll to zoom."""
    import plotly.graph_objects as go

    names = list(surfaces)
    vmax = vmax if vmax is not None else max(float(s.max()) for s in surfaces.values())
    a_np, b_np = a.cpu().numpy(), b.cpu().numpy()

    def traces(i):
        z = surfaces[names[int(i)]].clamp(max=vmax).cpu().numpy()
        return [
            go.Surface(
                x=a_np,
                y=b_np,
                z=z,
                colorscale="RdBu_r",
                cmin=0,
                cmax=vmax,
                colorbar={"title": "loss", "len": 0.7},
                name=names[int(i)],
            )
        ]

    scene = {
        "xaxis_title": "a (gradient sign)",
        "yaxis_title": "b (random)",
        "zaxis": {"title": "loss", "range": [0, vmax]},
        "camera": {"eye": {"x": 1.6, "y": -1.6, "z": 1.0}},
    }
    return slider_figure(
        list(range(len(names))),
        traces,
        "model",
        layout={"scene": scene, "height": 560, "title": title, "margin": {"l": 0, "r": 0, "t": 50}},
        labels=list(labels) if labels is not None else names,
    )
