r"""TRADES (Zhang et al., 2019, "Theoretically Principled Trade-off between Robustness and
Accuracy"), as in the reference code ``yaodongyu/TRADES`` (``trades.py``).

The robust error splits into the natural error and the boundary error,
:math:`\mathcal R_{rob} = \mathcal R_{nat} + \mathcal R_{bdy}`; TRADES minimises a surrogate of
the sum, cross-entropy on clean inputs plus :math:`\beta` times the largest KL divergence between
the predictions at :math:`x` and at a point :math:`x'` of the ball.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..threat import project_linf, step_linf
from ..train import predict
from ..validate import check_count, check_labels, check_nonnegative, check_pixels, check_positive

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def trades_objective(
    model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, beta: float
) -> torch.Tensor:
    r"""The TRADES loss for a given :math:`x'`:

    .. math::  \mathrm{CE}(f(x), y) + \beta\, \frac1B \sum_i
               \mathrm{KL}\big(\mathrm{softmax} f(x_i) \,\|\, \mathrm{softmax} f(x'_i)\big).

    As in the reference, the clean distribution is **not** detached: the gradient reaches the
    weights through both :math:`f(x)` and :math:`f(x')`, and the KL is ``batchmean``.
    """
    check_nonnegative(beta, "beta")
    logits, logits_adv = model(x), model(x_adv)  # (B, K) each
    kl = F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits, 1), reduction="batchmean")
    return F.cross_entropy(logits, y) + beta * kl


def trades_attack(
    model: nn.Module, x: torch.Tensor, eps: float, steps: int = 10, alpha: float | None = None
) -> torch.Tensor:
    r"""TRADES' inner maximisation: :math:`\max_{\|x'-x\|_\infty \le \varepsilon}
    \mathrm{KL}(f(x) \,\|\, f(x'))` by ``steps`` signed-gradient steps from
    :math:`x + 0.001\,\mathcal N(0, I)` (the reference's start, unclipped before the first step),
    each followed by the projection onto the ball and [0, 1]. No label is needed: the target is
    the model's own clean prediction. ``alpha`` defaults to :math:`2.5\varepsilon/\text{steps}`.

    Deviation: the reference switches the model to ``eval()`` for the attack; like every attack
    of the course this one runs in the model's current mode (the same for models without batch
    norm or dropout, such as the course's).
    """
    check_pixels(x)
    check_nonnegative(eps, "eps")
    check_count(steps, "steps", minimum=1)
    if alpha is not None:
        check_positive(alpha, "alpha")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    with torch.no_grad():
        p_nat = F.softmax(model(x), dim=1)  # (B, K), fixed target
    x_adv = x.detach() + 0.001 * torch.randn_like(x)
    for _ in range(steps):
        with torch.enable_grad():
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), 1), p_nat, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
        x_adv = project_linf(x_adv.detach() + step_linf(grad, alpha), x, eps)
    return project_linf(x_adv.detach(), x, eps)


def trades_loss(beta: float, eps: float, steps: int = 10, alpha: float | None = None) -> LossFn:
    r"""TRADES training loss ``loss_fn(model, x, y)``: :func:`trades_attack` then
    :func:`trades_objective`. Reference defaults: MNIST :math:`\varepsilon = 0.3`, 40 steps of
    0.01, :math:`\beta = 1`; CIFAR-10 :math:`\varepsilon = 0.031`, 10 steps of 0.007,
    :math:`\beta = 6`."""
    check_nonnegative(beta, "beta")
    check_nonnegative(eps, "eps")
    check_count(steps, "steps", minimum=1)
    if alpha is not None:
        check_positive(alpha, "alpha")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = trades_attack(model, x, eps, steps, alpha)
        return trades_objective(model, x, x_adv, y, beta)

    return loss_fn


def error_decomposition(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
) -> dict[str, float | torch.Tensor]:
    r"""Measured :math:`\mathcal R_{nat}` (misclassified), :math:`\mathcal R_{bdy}` (correct, but
    ``attack`` finds a point of the ball with another prediction) and
    :math:`\mathcal R_{rob}` (misclassified or flipped,
    :math:`= \mathcal R_{nat} + \mathcal R_{bdy}`)
    on ``(x, y)``, as floats under ``"natural"``, ``"boundary"``, ``"robust"``; and the per-point
    boolean masks ``"clean_correct"`` and ``"robust_correct"`` ``(N,)`` for paired tests between
    models scored on the same points. The attack only *finds* boundary points: the measured
    :math:`\mathcal R_{bdy}` is a lower bound."""
    check_pixels(x)
    check_labels(x, y)
    correct = predict(model, x) == y  # (N,)
    flipped = predict(model, attack(model, x, y)) != y  # (N,)
    robust_correct = correct & ~flipped  # (N,)
    return {
        "natural": (~correct).float().mean().item(),
        "boundary": (correct & flipped).float().mean().item(),
        "robust": (~robust_correct).float().mean().item(),
        "clean_correct": correct,
        "robust_correct": robust_correct,
    }
