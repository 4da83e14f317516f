r"""Regularization training: :math:`\mathcal L = \mathcal L_{cls} + \alpha\,\mathcal L_{reg}` (the
lecture's framework) and its first instance, CURE.

TRADES (:mod:`.trades`), TLA (:mod:`.tla`) and consistency regularization (:mod:`.consistency`)
are the other instances; each returns a ``loss_fn(model, x, y) -> scalar`` for
:func:`course_lib.train.train_epoch`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..train import cross_entropy_loss
from ..validate import check_batch, check_labels, check_nonnegative, check_pixels, check_positive

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
PerSampleLoss = Callable[[torch.Tensor], torch.Tensor]  # (B, ...) -> (B,)


def regularized(cls_loss: LossFn, reg_loss: LossFn, alpha: float) -> LossFn:
    r"""The lecture's framework:
    :math:`\mathcal L(x, y; \theta) = \mathcal L_{cls}(x, y; \theta) + \alpha\,
    \mathcal L_{reg}(x, y; \theta)`, both terms ``loss_fn(model, x, y) -> scalar``."""
    check_nonnegative(alpha, "alpha")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cls_loss(model, x, y) + alpha * reg_loss(model, x, y)

    return loss_fn


def cure_penalty(loss: PerSampleLoss, x: torch.Tensor, h: float) -> torch.Tensor:
    r"""CURE's finite-difference curvature penalty (Moosavi-Dezfooli et al., 2019, Eq. 6), per
    sample, shape ``(B,)``:

    .. math::  \mathcal L_{reg}(x) = \|\nabla_x \ell(x + h z) - \nabla_x \ell(x)\|_2^2,
               \qquad z = \frac{\mathrm{sign}(\nabla_x \ell(x))}
               {\|\mathrm{sign}(\nabla_x \ell(x))\|_2}.

    For small :math:`h` this is :math:`h^2 \|H z\|_2^2` with :math:`H` the input Hessian: it
    penalises curvature along the direction an attack takes. :math:`z` is a constant (no gradient
    flows through the sign), the two gradients keep their graph (double back-propagation), so the
    penalty trains the weights. ``loss`` maps ``(B, ...)`` to per-sample losses ``(B,)``.

    Deviations from the third-party reference (``F-Salehi/CURE_robustness``; the authors
    published none): we square the norm as in the paper (the code does not), use per-sample
    losses (the code differentiates the batch-mean loss, which scales every gradient by
    :math:`1/B`), and measure :math:`h` in pixel units (the code: in normalised inputs).
    """
    check_batch(x)  # any finite batch: ``loss`` need not be a network on pixels
    check_positive(h, "h")
    with torch.enable_grad():
        x0 = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(x0).sum(), x0)  # (B, ...)
        s = g.sign().flatten(1)  # (B, d)
        z = (s / s.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(x)  # unit l2, constant
        x1 = x.detach().requires_grad_(True)
        diff = loss(x1 + h * z) - loss(x1)  # (B,)
        (dg,) = torch.autograd.grad(diff.sum(), x1, create_graph=True)  # (B, ...)
    return dg.flatten(1).pow(2).sum(dim=1)  # (B,)


def cure_regularizer(h: float) -> LossFn:
    r"""CURE's :math:`\mathcal L_{reg}` as a loss term: the batch mean of :func:`cure_penalty` of
    the cross-entropy, at step :math:`h` (pixel units, :math:`\ell_2`)."""
    check_positive(h, "h")

    def reg_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_pixels(x)
        check_labels(x, y)
        per_sample = lambda z: F.cross_entropy(model(z), y, reduction="none")  # noqa: E731
        return cure_penalty(per_sample, x, h).mean()

    return reg_loss


def cure_loss(lam: float, h: float) -> LossFn:
    r"""CURE training (Moosavi-Dezfooli et al., 2019):
    :math:`\mathcal L = \mathrm{CE}(f(x), y) + \lambda\,\|\nabla\ell(x + hz) - \nabla\ell(x)\|^2`,
    i.e. ``regularized(cross_entropy_loss, cure_regularizer(h), lam)``. The paper grows
    :math:`h` over the first epochs (0.1, 0.4, 0.8, 1.8, 3 in the reference): call this factory
    once per epoch with the epoch's :math:`h`."""
    check_nonnegative(lam, "lam")
    return regularized(cross_entropy_loss, cure_regularizer(h), lam)
