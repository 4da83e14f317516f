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


EOT_BATCH = 4096  # at most this many inputs (draws x images) in one call of the model


class EOT(nn.Module):
    r"""Expectation over Transformation: the randomised model :math:`f(t(x))`, :math:`t \sim T`,
    replaced by the Monte-Carlo estimate of its expected class probabilities over ``samples``
    fresh draws,

    .. math::  \bar p(x) = \frac1k \sum_{j=1}^k \mathrm{softmax}\big(f(t_j(x))\big),\qquad
               \nabla_x \bar p(x) = \frac1k \sum_{j=1}^k \nabla_x\,\mathrm{softmax}(f(t_j(x))),

    returned as log-probabilities :math:`\log \bar p` (so that ``argmax`` is the averaged
    prediction, and the cross-entropy that PGD climbs is :math:`-\log \bar p_y`).

    Deviation: this is *not* the objective of Athalye et al., who climb the mean loss
    :math:`\frac1k\sum_j -\log p_y(t_j(x))`, an estimate of :math:`\mathbb E_t[-\log p_y(t(x))]`.
    We climb the loss of the averaged classifier, :math:`-\log \mathbb E_t[p_y(t(x))]`, the
    prediction that Xie et al. and Taran et al. deploy when they aggregate draws. By Jensen's
    inequality :math:`\mathbb E_t[-\log p_y] \ge -\log \mathbb E_t[p_y]`, and the two weight the
    draws differently: :math:`\nabla(-\log \bar p_y) = \frac1k\sum_j \frac{p_y(t_j(x))}{\bar p_y}
    \nabla(-\log p_y(t_j(x)))` favours the draws that still classify :math:`x` correctly, where the
    mean loss weights every draw equally.

    **Batched draws.** The ``samples`` draws run as one call of ``model`` on ``samples`` stacked
    copies of the batch (``x.repeat(k, 1, 1, 1)``, viewed back as ``(k, B, C)``; split into calls
    of at most :data:`EOT_BATCH` inputs). This equals ``samples`` successive calls only if
    ``model`` draws its randomness independently for every image of a batch, which every random
    transform of :mod:`course_lib.defenses` does (resize-and-pad, pixel masks, TV's dropout mask,
    pixel deflection, :class:`~course_lib.defenses.diversification.RandomMember`). A model that
    drew one pattern per batch would see all copies get the same draw per call: do not wrap such
    a model. With a defense's generator in the same state, the gradient is the mean of the
    single-draw gradients of the same draws (a unit test checks it).
    """

    def __init__(self, model: nn.Module, samples: int):
        super().__init__()
        check_count(samples, "samples", minimum=1)
        self.model, self.samples = model, samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        per_call = max(1, EOT_BATCH // max(B, 1))  # draws per call of the model
        log_p = []
        for start in range(0, self.samples, per_call):
            k = min(per_call, self.samples - start)
            logits = self.model(x.repeat(k, *([1] * (x.ndim - 1))))  # (k B, C)
            log_p.append(F.log_softmax(logits, dim=1).view(k, B, -1))  # (k, B, C)
        log_p = torch.cat(log_p)  # (samples, B, C)
        return torch.logsumexp(log_p, dim=0) - math.log(self.samples)  # (B, C) log mean prob


def eot(model: nn.Module, samples: int = 10) -> EOT:
    """``model`` averaged over ``samples`` fresh draws of its randomness; see :class:`EOT`."""
    return EOT(model, samples)
