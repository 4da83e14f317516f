"""Pictures of certificates: the certified-radius field of a smoothed 2-D classifier, certified
balls around test points, certified-accuracy curves, and their plotly twins for the static site."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Circle, RegularPolygon

from ..checks import accuracy_interval
from .plots import CLASS_COLORS, canvas_to_png


def radius_field(
    smooth,
    resolution: int = 60,
    n0: int = 100,
    n: int = 500,
    alpha: float = 0.001,
    batch_size: int = 2_000,
) -> dict:
    """CERTIFY ``smooth`` (a 2-D smoothed classifier) at every point of a grid over [0, 1]².

    Returns ``{"xs", "ys", "pred", "radius", "signed"}`` with ``(R, R)`` arrays: the class of g
    (-1 = abstain), the certified radius, and the radius signed by the class (class 1 positive,
    class 0 negative, NaN where g abstains) for a diverging colour map.
    """
    xs = np.linspace(0.0, 1.0, resolution, dtype=np.float32)
    gx, gy = np.meshgrid(xs, xs)
    device = next(smooth.base_model.parameters()).device
    points = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).to(device)  # (R*R, 2)
    pred, radius = smooth.certify_batch(points, n0, n, alpha, batch_size)
    pred, radius = pred.cpu().numpy(), radius.cpu().numpy()
    signed = np.where(pred == 1, radius, -radius).astype(np.float64)
    signed[pred == -1] = np.nan
    shape = (resolution, resolution)
    return {
        "xs": xs,
        "ys": xs,
        "pred": pred.reshape(shape),
        "radius": radius.reshape(shape),
        "signed": signed.reshape(shape),
    }


def draw_radius_field(ax, field: dict, vmax: float, colorbar: bool = False):
    """The signed radius field: the deeper the colour, the larger the certified radius; white at
    g's decision boundary, grey where g abstains."""
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#bbbbbb")
    image = ax.imshow(
        field["signed"],
        origin="lower",
        extent=(0, 1, 0, 1),
        cmap=cmap,
        vmin=-vmax,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.contour(field["xs"], field["ys"], np.nan_to_num(field["signed"]), [0.0], colors="k")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, label="certified radius (sign = class)")
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
    return image


def certified_balls(x: torch.Tensor, radii, classes, norm: str = "l2") -> PatchCollection:
    """A collection of certified balls (circles for ℓ2, diamonds for ℓ1) around the points ``x``
    ``(N, 2)``, coloured by the certified class; abstentions (radius 0) draw nothing."""
    x, radii, classes = np.asarray(x), np.asarray(radii), np.asarray(classes)
    keep = (classes >= 0) & (radii > 0)
    if norm == "l2":
        patches = [Circle(p, r) for p, r in zip(x[keep], radii[keep], strict=True)]
    else:
        patches = [
            RegularPolygon(p, 4, radius=r) for p, r in zip(x[keep], radii[keep], strict=True)
        ]
    colors = np.array(CLASS_COLORS)[classes[keep] % len(CLASS_COLORS)]
    return PatchCollection(patches, facecolors="none", edgecolors=colors, linewidths=1.4)


class CertifiedView:
    """A radius field drawn once, with certified balls redrawn on top by :meth:`draw` (blitting,
    as :class:`~course_lib.viz.BoundaryView`); returns PNG images for a widget."""

    def __init__(self, field: dict, x: torch.Tensor, y: torch.Tensor, vmax: float, size=4.6):
        self.fig = Figure(figsize=(size, size))
        self.canvas = FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_subplot()
        draw_radius_field(self.ax, field, vmax)
        self.x = x.cpu()
        colors = np.array(CLASS_COLORS)[y.cpu().numpy() % len(CLASS_COLORS)]
        self.ax.scatter(*self.x.T, c=colors, s=14, edgecolors="white", linewidths=0.5, zorder=3)
        self.ax.set(xticks=[0, 0.5, 1], yticks=[0, 0.5, 1])
        self.ax.set_title(" \n ", fontsize=10)  # room for a two-line title
        self.fig.tight_layout()
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        self._balls = None

    def draw(self, radii, classes, title: str = "", norm: str = "l2"):
        if self._balls is not None:
            self._balls.remove()
        self.canvas.restore_region(self.background)
        self._balls = self.ax.add_collection(certified_balls(self.x, radii, classes, norm))
        self.ax.title.set_text(title)
        self.ax.draw_artist(self._balls)
        self.ax.draw_artist(self.ax.title)
        return canvas_to_png(self.canvas)


def certified_accuracy_plot(
    r_grid: Sequence[float],
    curves: Mapping[str, torch.Tensor],
    ax=None,
    xlabel="radius r (ℓ2)",
    n: int | None = None,
):
    """Certified accuracy against the radius, one step curve per entry of ``curves``; with ``n``
    (the number of test points) each curve gets its 95% Clopper–Pearson band."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, curve in curves.items():
        line = ax.plot(r_grid, np.asarray(curve), drawstyle="steps-post", label=label)[0]
        if n is not None:
            low, high = accuracy_interval(np.asarray(curve), n)
            ax.fill_between(
                r_grid, low, high, step="post", color=line.get_color(), alpha=0.15, lw=0
            )
    ax.set(xlabel=xlabel, ylabel="certified accuracy", ylim=(0, 1.02), xlim=(0, max(r_grid)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def ball_outline(x: torch.Tensor, radii, classes, norm: str = "l2", vertices: int = 40):
    """The outlines of certified balls as one ``(xs, ys)`` pair with NaN breaks, for a single
    plotly scatter trace (cheap to toggle with a slider)."""
    x, radii, classes = np.asarray(x), np.asarray(radii), np.asarray(classes)
    keep = (classes >= 0) & (radii > 0)
    t = np.linspace(0, 2 * np.pi, vertices if norm == "l2" else 5)
    ring = (
        np.stack([np.cos(t), np.sin(t)], 1) if norm == "l2" else np.stack([np.sin(t), np.cos(t)], 1)
    )
    pts = x[keep, None, :] + radii[keep, None, None] * ring[None]  # (N, V, 2)
    pts = np.concatenate([pts, np.full((pts.shape[0], 1, 2), np.nan)], 1).reshape(-1, 2)
    return pts[:, 0], pts[:, 1]
