"""Figures the chapters share: decision boundaries, image grids, accuracy-vs-epsilon curves, and
the redraw-in-place view that the widgets use (plotly twins are in :mod:`.plotly_twin`)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle

from ..checks import accuracy_interval
from ..validate import check_batch, check_fits

CLASS_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


@torch.no_grad()
def boundary_grid(model: torch.nn.Module, resolution: int = 200, lim=(0.0, 1.0)) -> dict:
    """Evaluate a 2-D classifier on a ``resolution x resolution`` grid over ``lim x lim``.

    Returns ``{"xs", "ys", "pred", "prob", "num_classes"}``: the axes, the predicted class
    ``(R, R)`` and the probability of class 1 (for more than two classes: of the predicted class).
    Compute it once and pass it to :func:`decision_boundary`, so that a widget only redraws.
    """
    device = next(model.parameters()).device
    check_fits(model, torch.zeros(1, 2, device=device), name="a 2-D point")
    xs = np.linspace(*lim, resolution, dtype=np.float32)
    gx, gy = np.meshgrid(xs, xs)
    points = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).to(device)  # (R*R, 2)
    probs = torch.softmax(model(points), dim=1).cpu()  # (R*R, K)
    pred = probs.argmax(1)
    prob = probs[:, 1] if probs.shape[1] == 2 else probs.max(1).values
    shape = (resolution, resolution)
    return {
        "xs": xs,
        "ys": xs,
        "pred": pred.view(shape).numpy(),
        "prob": prob.view(shape).numpy(),
        "num_classes": int(probs.shape[1]),
    }


def decision_boundary(
    grid: dict,
    x: torch.Tensor,
    y: torch.Tensor,
    ax=None,
    eps: float | None = None,
    norm: str = "linf",
    x_adv: torch.Tensor | None = None,
):
    """Draw the classifier's regions (from :func:`boundary_grid`), the points ``x`` coloured by
    ``y``, optional epsilon-balls (squares for l_inf, circles for l_2) and arrows to ``x_adv``.

    Cheap enough for a live widget: one image, one contour, one collection per layer.
    """
    _check_points(x, y)
    if ax is None:
        ax = plt.subplots(figsize=(4.5, 4.5))[1]
    extent = (grid["xs"][0], grid["xs"][-1], grid["ys"][0], grid["ys"][-1])
    k = grid.get("num_classes", 2)
    if k == 2:  # shade by P(class 1); the boundary is where it crosses 1/2
        ax.imshow(
            grid["prob"],
            origin="lower",
            extent=extent,
            cmap="RdBu_r",
            vmin=0,
            vmax=1,
            alpha=0.35,
            interpolation="bilinear",
        )
        ax.contour(grid["xs"], grid["ys"], grid["prob"], levels=[0.5], colors="k", linewidths=1)
    else:  # colour each region by its class; boundaries between regions of different classes
        cmap = ListedColormap(CLASS_COLORS[:k])
        ax.imshow(
            grid["pred"],
            origin="lower",
            extent=extent,
            cmap=cmap,
            vmin=-0.5,
            vmax=k - 0.5,
            alpha=0.3,
            interpolation="nearest",
        )
        ax.contour(
            grid["xs"],
            grid["ys"],
            grid["pred"],
            levels=np.arange(k - 1) + 0.5,
            colors="k",
            linewidths=1,
        )
    x, y = x.detach().cpu().numpy(), y.detach().cpu().numpy()
    colors = np.array(CLASS_COLORS)[y % len(CLASS_COLORS)]
    ax.scatter(x[:, 0], x[:, 1], c=colors, s=14, edgecolors="white", linewidths=0.4, zorder=3)
    ax.set(xlim=extent[:2], ylim=extent[2:], aspect="equal", xlabel="x₁", ylabel="x₂")
    ax.grid(False)
    draw_attack(ax, x, eps, norm, x_adv, colors)
    return ax


def _check_points(x, y) -> None:
    """2-D points ``x (N, 2)`` and one integer class each in ``y (N,)``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 2 or x.shape[0] == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a non-empty tensor of 2-D points (N, 2), got {got}")
    if not isinstance(y, torch.Tensor) or y.shape != x.shape[:1] or y.is_floating_point():
        raise ValueError(f"y must be an integer tensor of shape ({x.shape[0]},), one class each")


def draw_attack(ax, x, eps=None, norm="linf", x_adv=None, colors="k") -> list:
    """Add epsilon-balls around the points ``x`` and arrows to ``x_adv``; returns the artists
    (so that a widget can ``remove()`` them and draw new ones on the same axes)."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
    artists = []
    if eps:
        balls = [
            Rectangle((px - eps, py - eps), 2 * eps, 2 * eps)
            if norm == "linf"
            else Circle((px, py), eps)
            for px, py in x
        ]
        artists.append(
            ax.add_collection(
                PatchCollection(balls, facecolor="none", edgecolor=colors, linewidth=0.6, alpha=0.7)
            )
        )
    if x_adv is not None:
        xa = x_adv.detach().cpu().numpy()
        artists.append(
            ax.quiver(
                x[:, 0],
                x[:, 1],
                xa[:, 0] - x[:, 0],
                xa[:, 1] - x[:, 1],
                angles="xy",
                scale_units="xy",
                scale=1,
                width=0.004,
                color="k",
                zorder=4,
            )
        )
    return artists


def image_grid(
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    preds: Sequence[int] | torch.Tensor | None = None,
    ncols: int = 8,
    row_titles: Sequence[str] | None = None,
):
    """Show a batch ``(N, C, H, W)`` in a grid; titles ``label`` or ``label→pred`` (red if wrong).

    With ``row_titles``, each row is labelled on its left (e.g. "clean", "adversarial"). The grid is
    one mosaic image in one axes: ten times faster to draw than one axes per image.
    """
    check_batch(images, "images")  # imshow clips; a delta mapped to [0, 1] may round past 1
    if images.ndim != 4 or len(labels) != images.shape[0]:
        raise ValueError(
            f"images must be (N, C, H, W) with one label each, got {tuple(images.shape)} and "
            f"{len(labels)} labels"
        )
    images = images.detach().cpu()
    n, c, h, w = images.shape
    nrows = -(-n // ncols)
    pad, top = max(2, w // 14), max(8, h // 3)  # gaps between images; room for the titles
    mosaic = np.ones((nrows * (h + top), ncols * (w + pad), c), dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, ncols)
        mosaic[r * (h + top) + top : (r + 1) * (h + top), k * (w + pad) : k * (w + pad) + w] = (
            images[i].permute(1, 2, 0).numpy()
        )
    fig, ax = plt.subplots(figsize=(1.0 * ncols, 1.25 * nrows + 0.1))
    ax.imshow(mosaic.squeeze(-1) if c == 1 else mosaic, vmin=0, vmax=1, cmap="gray")
    ax.axis("off")
    for i in range(n):
        r, k = divmod(i, ncols)
        true = int(labels[i])
        pred = None if preds is None else int(preds[i])
        text = str(true) if pred is None else f"{true}→{pred}"
        color = "red" if pred is not None and pred != true else "black"
        ax.text(
            k * (w + pad) + w / 2,
            r * (h + top) + top - 1,
            text,
            ha="center",
            va="bottom",
            fontsize=8,
            color=color,
        )
    for r, title in enumerate(row_titles or []):
        ax.text(-3, r * (h + top) + top + h / 2, title, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def accuracy_vs_eps(
    eps_grid: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    ax=None,
    title: str = "",
    xlabel: str = r"$\varepsilon$",
    n: int | None = None,
):
    """Accuracy (y) against the attack budget (x), one line per attack or model; with ``n`` (the
    number of test points) each line gets its 95% Clopper–Pearson band."""
    ax = ax if ax is not None else plt.subplots(figsize=(5, 3.5))[1]
    for name, accs in curves.items():
        line = ax.plot(eps_grid, accs, marker="o", markersize=3, label=name)[0]
        if n is not None:
            low, high = accuracy_interval(np.asarray(accs), n)
            ax.fill_between(eps_grid, low, high, color=line.get_color(), alpha=0.15, lw=0)
    ax.set(xlabel=xlabel, ylabel="accuracy", ylim=(-0.02, 1.02), title=title)
    ax.legend(frameon=False)
    return ax


class BoundaryView:
    """A decision-boundary figure that a widget redraws in place, as a PNG.

    The regions and points are drawn once and kept as a pixel buffer; :meth:`draw` restores that
    buffer and draws only the epsilon-balls, the arrows and the title on top (matplotlib's
    "blitting"). An update costs ~15 ms instead of ~150 ms for a fresh figure.
    """

    def __init__(self, grid: dict, x: torch.Tensor, y: torch.Tensor, size: float = 4.6):
        self.fig = Figure(figsize=(size, size))
        self.canvas = FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_subplot()
        decision_boundary(grid, x, y, ax=self.ax)
        self.ax.set(xticks=[0, 0.5, 1], yticks=[0, 0.5, 1])
        self.ax.set_title(" ", fontsize=10)  # reserve the title's space
        self.fig.tight_layout()
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        self.x = x
        self.colors = np.array(CLASS_COLORS)[y.cpu().numpy() % len(CLASS_COLORS)]
        self._artists: list = []

    def draw(self, eps: float | None = None, norm: str = "linf", x_adv=None, title: str = ""):
        """Redraw with new balls/arrows/title; returns the figure as a PNG ``Image``."""
        for artist in self._artists:
            artist.remove()
        self.canvas.restore_region(self.background)
        self._artists = draw_attack(self.ax, self.x, eps, norm, x_adv, self.colors)
        self.ax.title.set_text(title)
        for artist in [*self._artists, self.ax.title]:
            self.ax.draw_artist(artist)
        return canvas_to_png(self.canvas)


def canvas_to_png(canvas: FigureCanvasAgg):
    """The canvas's current pixels as a PNG ``IPython.display.Image`` (light compression)."""
    import PIL.Image
    from IPython.display import Image

    buffer = io.BytesIO()
    rgba = np.asarray(canvas.buffer_rgba())
    PIL.Image.fromarray(rgba).save(buffer, format="png", compress_level=1)
    return Image(data=buffer.getvalue(), format="png")
