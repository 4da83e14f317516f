r"""Randomized smoothing with other noises (Yang, Duan, Hu, Salman, Razenshteyn & Li, 2020,
"Randomized Smoothing of All Shapes and Sizes").

The certificate is a property of the *pair* (noise distribution, threat norm). Only two things
change with respect to Gaussian smoothing: how the noise is drawn and how
:math:`\underline{p_A}` turns into a radius. PREDICT, CERTIFY and the Clopper–Pearson bound are
inherited from :class:`~course_lib.certify.smoothing.Smooth`.

=====================  ===========  ============================================================
noise (per coordinate)  norm        certified radius from :math:`\underline{p_A} \ge 1/2`
=====================  ===========  ============================================================
:math:`\mathcal N(0,\sigma^2)`  ℓ2  :math:`\sigma\,\Phi^{-1}(\underline{p_A})`
:math:`U[-\lambda,\lambda]`     ℓ1  :math:`2\lambda\,(\underline{p_A} - \tfrac12)`
Laplace(0, λ)                   ℓ1  :math:`-\lambda\,\log\!\big(2(1 - \underline{p_A})\big)`
=====================  ===========  ============================================================

For comparisons at equal noise power, the per-coordinate standard deviation is
:math:`\sigma = \lambda/\sqrt3` (uniform) and :math:`\sigma = \sqrt2\,\lambda` (Laplace); it is
stored as ``self.sigma``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..validate import check_positive
from .smoothing import Smooth


class SmoothUniformL1(Smooth):
    r"""Smoothing with uniform noise on :math:`[-\lambda, \lambda]^d`; certifies ℓ1 radii
    :math:`2\lambda(\underline{p_A} - \tfrac12)` (Yang et al. 2020, Table 1)."""

    norm = "l1"

    def __init__(self, base_model: nn.Module, num_classes: int, lam: float):
        check_positive(lam, "lam")
        super().__init__(base_model, num_classes, sigma=lam / math.sqrt(3))
        self.lam = lam

    def sample_noise(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        return (2 * torch.rand(shape, device=device) - 1) * self.lam

    def radius(self, p_A_lower: torch.Tensor) -> torch.Tensor:
        return 2 * self.lam * (p_A_lower.double() - 0.5)


class SmoothLaplaceL1(Smooth):
    r"""Smoothing with i.i.d. Laplace noise of scale :math:`\lambda` (density
    :math:`\propto e^{-|\varepsilon_i|/\lambda}`); certifies ℓ1 radii
    :math:`-\lambda \log(2(1 - \underline{p_A}))` (Teng et al. 2020; Yang et al. 2020)."""

    norm = "l1"

    def __init__(self, base_model: nn.Module, num_classes: int, lam: float):
        check_positive(lam, "lam")
        super().__init__(base_model, num_classes, sigma=math.sqrt(2) * lam)
        self.lam = lam

    def sample_noise(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        # inverse CDF: u ~ U(-1/2, 1/2), eps = -lam * sign(u) * log(1 - 2|u|)
        u = torch.rand(shape, device=device) - 0.5
        return -self.lam * u.sign() * torch.log1p(-2 * u.abs())

    def radius(self, p_A_lower: torch.Tensor) -> torch.Tensor:
        return -self.lam * torch.log(2 * (1 - p_A_lower.double()))
