r"""Adaptive attacks on pre-processing defenses: BPDA and EOT (Athalye, Carlini & Wagner, 2018,
"Obfuscated Gradients Give a False Sense of Security").

Both are *models*, not attacks: they wrap a :class:`~course_lib.defenses.Defended` so that any
gradient attack of :mod:`course_lib.attacks` follows a useful gradient, and they compose the way
the paper writes them::

    x_adv = pgd(eot(bpda(defended), samples=10), x, y, eps)

The attack only *uses* these surrogates to compute gradients; robust accuracy is always measured
on the real ``defended`` model (with fresh randomness), e.g.
``robust_accuracy(defended, x, y, lambda m, a, b: pgd(eot(bpda(m), 10), a, b, eps))``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .validate import check_count


class BPDA(nn.Module):
    r"""Backward Pass Differentiable Approximation: the forward pass runs the real transform
    :math:`g`, the backward pass the derivative of an approximation :math:`\hat g \approx g`
    (identity by default, as Athalye et al. use for JPEG, bit depth, quilting, TV and pixel
    deflection):

    .. math::  \tilde g(x) = \hat g(x) + \mathrm{sg}\big(g(x) - \hat g(x)\big),

    with :math:`\mathrm{sg}` the stop-gradient, so :math:`\tilde g(x) = g(x)` and
    :math:`\nabla \tilde g = \nabla \hat g`. The classifier after it is differentiated exactly.
    """

    def __init__(self, defended: nn.Module, approx: nn.Module | None = None):
        super().__init__()
        if not (hasattr(defended, "transform") and hasattr(defended, "classifier")):
            raise ValueError("defended must be a Defended(transform, classifier) module")
        self.defended = defended
        self.approx = nn.Identity() if approx is None else approx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g_x = self.defended.transform(x).detach()  # the real transform, value only
        g_hat = self.approx(x)  # the approximation, gradient only
        return self.defended.classifier(g_hat + (g_x - g_hat).detach())  # (B, K)


def bpda(defended: nn.Module, approx: nn.Module | None = None) -> BPDA:
    """``defended`` with the backward pass of ``approx`` (identity by default), see
    :class:`BPDA`."""
    return BPDA(defended, approx)


class EOT(nn.Module):
    r"""Expectation over Transformation: the randomised model :math:`f(t(x))`, :math:`t \sim T`,
    replaced by the Monte-Carlo estimate of its expected class probabilities over ``samples``
    fresh draws,

    .. math::  \bar p(x) = \frac1k \sum_{j=1}^k \mathrm{softmax}\big(f(t_j(x))\big),\qquad
               \nabla_x \bar p(x) = \frac1k \sum_{j=1}^k \nabla_x\,\mathrm{softmax}(f(t_j(x))),

    returned as log-probabilities :math:`\log \bar p` (so that ``argmax`` is the averaged
    prediction, and the cross-entropy that PGD climbs is :math:`-\log \bar p_y`). The draws are
    ``samples`` successive calls of ``model``: with the defense's generator in the same state,
    the gradient is exactly the mean of the ``samples`` single-draw gradients.

    Deviation: Athalye et al.'s code averages the *loss* (the mean of :math:`-\log p_y` over
    draws); averaging the probabilities is the same expectation one step earlier, and it is how
    Xie et al. and Taran et al. aggregate their own draws.
    """

    def __init__(self, model: nn.Module, samples: int):
        super().__init__()
        check_count(samples, "samples", minimum=1)
        self.model, self.samples = model, samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_p = torch.stack([F.log_softmax(self.model(x), dim=1) for _ in range(self.samples)])
        return torch.logsumexp(log_p, dim=0) - math.log(self.samples)  # (B, K) log mean prob


def eot(model: nn.Module, samples: int = 10) -> EOT:
    """``model`` averaged over ``samples`` fresh draws of its randomness; see :class:`EOT`."""
    return EOT(model, samples)
