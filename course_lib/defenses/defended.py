r"""A pre-processing defense in front of a classifier: :math:`x \mapsto f(g(x))`.

:class:`Defended` is what the defender deploys and what every evaluation of chapter 2 attacks.
Its gradient is whatever autograd makes of the transform :math:`g`:

* a transform written with differentiable tensor operations (random resize-and-pad, a denoiser)
  passes real, if random, gradients;
* a transform that the reference code runs outside any autograd graph (a Cython TV solver, numpy
  pixel deflection, pywt wavelets) reaches autograd as a black box. :func:`shattered` gives it
  the derivative autograd reports for piecewise-constant operations such as rounding: zero.
  This is the *shattered gradient* of Athalye, Carlini & Wagner (2018); BPDA
  (:func:`course_lib.adaptive.bpda`) replaces it by the derivative of an approximation.
"""

from __future__ import annotations

import torch
from torch import nn


def shattered(x: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    r"""The value of ``x_t`` with a zero derivative with respect to ``x``:
    :math:`x_t + 0 \cdot x`, so that autograd can still differentiate through it (and finds
    nothing), as for ``torch.round``."""
    return x_t.detach() + 0.0 * x


class Defended(nn.Module):
    """``classifier(transform(x))``; a fresh draw of a random transform on every call.

    ``transform`` and ``classifier`` are kept as submodules, so ``.to(device)`` moves both and
    :func:`course_lib.adaptive.bpda` can swap the transform's backward pass.
    """

    def __init__(self, transform: nn.Module, classifier: nn.Module):
        super().__init__()
        self.transform, self.classifier = transform, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.transform(x))  # (B, K)
