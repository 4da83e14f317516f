r"""Learnable linear-spline activations with slopes clipped to :math:`[-1, 1]` (Ducotterd, Goujon,
Bohra, Perdios, Neumayer, Unser, 2024, "Improving Lipschitz-constrained neural networks by learning
activation functions", JMLR 25; reference code StanislasDucotterd/Lipschitz_DSNN,
``activations/linearspline.py``).

Each channel :math:`c` has its own continuous piecewise-linear function :math:`\sigma_c` with
``knots`` knots :math:`t_k = -R + kT` on a uniform grid over :math:`[-R, R]`,
:math:`T = 2R/(\text{knots}-1)`, and coefficients :math:`c_k = \sigma_c(t_k)`. Between knots it
interpolates linearly; outside the grid it **extrapolates** the first and last pieces linearly.
The network stays 1-Lipschitz because every slope is clipped to :math:`[-1, 1]` in the forward
pass, and the TV(2) regulariser (the :math:`\ell_1` norm of the slope changes) favours
activations with few active knots. :func:`spline_lipschitz_bound` is the layer-product bound of an
``nn.Sequential`` that contains such splines (the bound of :mod:`.bounds` does not know them).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..validate import check_choice, check_count, check_positive
from .bounds import _layers, layer_lipschitz


def slope_clipping(c: torch.Tensor, T: float) -> torch.Tensor:
    r"""The reference's projection: clamp :math:`c_{k+1} - c_k` to :math:`[-T, T]` (slopes in
    :math:`[-1, 1]`), rebuild the coefficients by a cumulative sum from 0, then shift each channel
    so that its mean change is zero (:math:`\tilde c \mathrel{+}= \overline{c - \tilde c}`).
    ``c`` ``(C, K)``; returns ``(C, K)``. Coefficients whose slopes are all in range come back
    unchanged.

    **Deviation (gradient only):** ``torch.clamp``, which the reference uses, passes no gradient
    at the bound itself, and a ReLU or identity initialisation puts every slope exactly at
    :math:`\pm 1` (or a rounding error above it): those pieces could never learn. Here the value
    is clamped exactly as in the reference, and the gradient passes wherever
    :math:`|c_{k+1} - c_k| \le T(1 + 10^{-4})`; a slope beyond that gets none (as in the
    reference)."""
    d = c[:, 1:] - c[:, :-1]  # (C, K-1) raw steps
    live = (d.detach().abs() <= T * (1 + 1e-4)).to(d.dtype)  # gradient passes here
    steps = d.detach().clamp(-T, T) + live * (d - d.detach())  # value: clamp(d); grad: live
    rebuilt = torch.cat([torch.zeros_like(c[:, :1]), steps.cumsum(dim=1)], dim=1)  # (C, K)
    return rebuilt + (c - rebuilt).mean(dim=1, keepdim=True)


class LinearSpline(nn.Module):
    r"""One learnable linear spline per channel (dim 1 of the input), 1-Lipschitz by slope clipping.

    :math:`\sigma_c(x) = c_k + \frac{x - t_k}{T}(c_{k+1} - c_k)` with
    :math:`k = \min(\max(\lfloor (x + R)/T \rfloor, 0), \text{knots} - 2)`; the fraction uses the
    unclamped :math:`x`, so beyond :math:`\pm R` the end pieces continue linearly (the reference's
    ``fracs``). The coefficients used are ``slope_clipping(coefficients, T)``.

    ``init``: ``"relu"``, ``"identity"`` or ``"absolute_value"`` (the reference's initialisations,
    :math:`c_k = \text{init}(t_k)`). Deviations from the reference: no per-channel input scale
    :math:`\alpha` (:math:`\sigma(\alpha x)/\alpha`); plain autograd through ``gather`` instead of
    its custom backward (the same gradient: each input reaches the two coefficients of its piece);
    one learning rate for weights and coefficients (the reference uses a smaller one for the
    coefficients).
    """

    def __init__(self, channels: int, knots: int = 21, range_: float = 1.0, init: str = "relu"):
        super().__init__()
        check_count(channels, "channels", minimum=1)
        check_count(knots, "knots", minimum=3)
        check_positive(range_, "range_")
        check_choice(init, "init", ("relu", "identity", "absolute_value"))
        self.channels, self.knots, self.range = channels, knots, float(range_)
        self.T = 2 * self.range / (knots - 1)  # knot spacing
        grid = torch.linspace(-self.range, self.range, knots)  # (K,)
        start = {"relu": grid.clamp(min=0), "identity": grid, "absolute_value": grid.abs()}[init]
        self.coefficients = nn.Parameter(start.repeat(channels, 1))  # (C, K)

    @property
    def grid(self) -> torch.Tensor:
        """The knot positions :math:`t_k`, shape ``(K,)``."""
        c = self.coefficients
        return torch.linspace(-self.range, self.range, self.knots, dtype=c.dtype, device=c.device)

    def clipped_coefficients(self) -> torch.Tensor:
        """The coefficients the forward pass uses, ``(C, K)``: all slopes in [-1, 1]."""
        return slope_clipping(self.coefficients, self.T)

    def slopes(self) -> torch.Tensor:
        """Slopes of the ``K - 1`` pieces after clipping, ``(C, K-1)``; the end pieces extend
        beyond the grid, so these are all the slopes of the function."""
        c = self.clipped_coefficients()
        return (c[:, 1:] - c[:, :-1]) / self.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[1] != self.channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {self.channels}, ...), got {shape}")
        c = self.clipped_coefficients().to(x.dtype)  # (C, K)
        xc = x.transpose(0, 1).reshape(self.channels, -1)  # (C, N): one row per channel
        u = (xc + self.range) / self.T  # position in units of T from the first knot
        k = u.detach().floor().clamp(0, self.knots - 2).long()  # (C, N) piece index
        frac = u - k  # (C, N), outside [0, 1] beyond the grid: linear extrapolation
        left, right = c.gather(1, k), c.gather(1, k + 1)  # (C, N)
        out = left + frac * (right - left)
        shape = (self.channels, x.shape[0], *x.shape[2:])
        return out.reshape(shape).transpose(0, 1)

    def lipschitz(self) -> float:
        """The exact Lipschitz constant: the largest absolute slope after clipping (≤ 1)."""
        return float(self.slopes().detach().abs().max())

    def tv2(self) -> torch.Tensor:
        r"""TV(2) :math:`= \sum_c \sum_k |c_{k+1} - 2c_k + c_{k-1}| / T`, the :math:`\ell_1` norm
        of the slope changes at the inner knots, summed over channels (the reference's
        :math:`[1, -2, 1]/T` filter on the clipped coefficients). A scalar with gradient."""
        c = self.clipped_coefficients()
        return (c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]).abs().sum() / self.T

    def extra_repr(self) -> str:
        return f"channels={self.channels}, knots={self.knots}, range={self.range:g}"


def total_tv2(model: nn.Module) -> torch.Tensor:
    """The sum of :meth:`LinearSpline.tv2` over every spline in ``model`` (0 if none)."""
    terms = [m.tv2() for m in model.modules() if isinstance(m, LinearSpline)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def spline_lipschitz_bound(model: nn.Module) -> float:
    r"""Layer-product bound :math:`\prod_i \mathrm{Lip}(\text{layer}_i)` of an ``nn.Sequential`` in
    which a :class:`LinearSpline` counts with its exact constant :meth:`LinearSpline.lipschitz`
    (elementwise, so the layer's constant is the largest channel's) and every other layer as in
    :func:`course_lib.lipschitz.bounds.layer_lipschitz` (linear layers: exact SVD)."""
    return math.prod(
        m.lipschitz() if isinstance(m, LinearSpline) else layer_lipschitz(m, i)
        for i, m in enumerate(_layers(model))
    )
