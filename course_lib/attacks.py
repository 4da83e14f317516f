r"""White-box attacks: FGSM and PGD (untargeted and targeted), built on :mod:`course_lib.threat`.

Every attack has the shape ``attack(model, x, y, eps, ...) -> x_adv`` with pixels in [0, 1] and
``x_adv`` inside the :math:`\varepsilon`-ball around ``x``. Attacks never call ``model.train()`` or
``model.eval()`` (put the model in the mode you want to attack) and work on ``x.device``.

The untargeted attacks maximise the cross-entropy :math:`\ell(f(x'), y)`; the targeted one
minimises :math:`\ell(f(x'), t)` for a chosen target class :math:`t`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .threat import THREATS
from .validate import (
    check_batch,
    check_choice,
    check_count,
    check_fits,
    check_labels,
    check_nonnegative,
    check_pixels,
    check_positive,
    checked_by,
)


def _check_gradient_args(model, x, y):
    check_batch(x, "x")
    check_fits(model, x, y)


@checked_by(_check_gradient_args)
def input_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r""":math:`\nabla_x \sum_i \ell(f(x_i), y_i)`: each sample's gradient of its own loss.

    Works inside ``torch.no_grad()`` too; no gradient reaches the model's parameters.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad  # (B, ...)


def fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    r"""Fast Gradient Sign Method (Goodfellow, Shlens & Szegedy, 2015).

    One step of the linearised loss to the corner of the :math:`\ell_\infty` ball:

    .. math::  x' = \mathrm{clip}_{[0,1]}\big(x + \varepsilon\,
               \mathrm{sign}(\nabla_x \ell(f(x), y))\big).

    (For :math:`\ell_2`, the same idea is ``pgd(..., norm="l2", steps=1, alpha=eps,
    random_start=False)``.)
    """
    _check_attack_args(x, y, eps)
    check_fits(model, x, y)
    if eps == 0:
        return x.clone()
    linf = THREATS["linf"]
    grad = input_gradient.__wrapped__(model, x, y)  # (B, ...)
    return linf.project(x + linf.step(grad, eps), x, eps)


def pgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    alpha: float | None = None,
    steps: int = 10,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
) -> torch.Tensor:
    r"""Projected Gradient Descent (Madry et al., 2018), untargeted.

    From :math:`x^0` (``x`` or a random point of the ball) repeat ``steps`` times

    .. math::  x^{t+1} = \Pi_{B_p(x,\varepsilon)}\big(x^t
               + \alpha\, s_p(\nabla_x \ell(f(x^t), y))\big),

    where :math:`s_p` is the steepest-ascent direction of the norm and :math:`\Pi` the projection
    (:mod:`course_lib.threat`). With ``restarts > 1`` the whole climb is repeated from new random
    starts and each sample keeps its worst case: a restart that fools the model beats one that does
    not, ties go to the higher loss. So more restarts can never raise the robust accuracy.

    ``alpha`` defaults to :math:`2.5\,\varepsilon/\text{steps}` (Madry et al.), which lets the climb
    cross the ball from any start.
    """
    _check_attack_args(x, y, eps, alpha, steps, norm, restarts)
    check_fits(model, x, y)
    return _pgd_with_restarts(model, x, y, eps, alpha, steps, norm, random_start, restarts, False)


def pgd_targeted(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    *,
    alpha: float | None = None,
    steps: int = 10,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
) -> torch.Tensor:
    r"""Targeted PGD: descend :math:`\ell(f(x'), t)` so that the model predicts class ``target``.

    The same loop as :func:`pgd` with the step's sign flipped,
    :math:`x^{t+1} = \Pi(x^t - \alpha\, s_p(\nabla_x \ell(f(x^t), t)))`. Restarts keep, per sample,
    the run that reaches the target, ties going to the lower target loss.
    """
    _check_attack_args(x, target, eps, alpha, steps, norm, restarts, y_name="target")
    check_fits(model, x, target, y_name="target")
    return _pgd_with_restarts(
        model, x, target, eps, alpha, steps, norm, random_start, restarts, True
    )


def _pgd_with_restarts(model, x, labels, eps, alpha, steps, norm, random_start, restarts, targeted):
    """``restarts`` PGD climbs; each sample keeps its worst case (see :func:`keep_worst_case`)."""
    if eps == 0 or steps == 0 and not random_start:
        return x.clone()
    alpha = 2.5 * eps / max(steps, 1) if alpha is None else alpha
    direction = -1 if targeted else 1  # targeted attacks descend the target's loss
    climb, keep = pgd_climb.__wrapped__, keep_worst_case.__wrapped__  # arguments checked above
    best = climb(model, x, labels, eps, alpha, steps, norm, random_start, direction)
    for _ in range(restarts - 1):
        candidate = climb(model, x, labels, eps, alpha, steps, norm, random_start, direction)
        best = keep(model, best, candidate, labels, targeted)
    return best


def _check_climb_args(model, x, y, eps, alpha, steps, norm="linf", random_start=True, direction=1):
    _check_attack_args(x, y, eps, alpha, steps, norm)
    check_choice(direction, "direction", (1, -1))
    check_fits(model, x, y)


@checked_by(_check_climb_args)
def pgd_climb(model, x, y, eps, alpha, steps, norm="linf", random_start=True, direction=1):
    """One PGD run, the heart of :func:`pgd`: ``steps`` projected steps of size ``alpha``
    (``direction=-1`` descends, for targeted attacks). No restarts; ``pgd_climb.__wrapped__``
    skips the argument checks."""
    threat = THREATS[norm]
    x_adv = threat.random_start(x, eps) if random_start else x.clone()
    for _ in range(steps):
        grad = input_gradient.__wrapped__(model, x_adv, y)  # (B, ...)
        x_adv = threat.project(x_adv + threat.step(grad, direction * alpha), x, eps)
    return x_adv.detach()


def _check_worst_case_args(model, x_a, x_b, y, targeted=False):
    check_pixels(x_a, "x_a")
    check_pixels(x_b, "x_b")
    if x_a.shape != x_b.shape:
        raise ValueError(
            f"x_b must have the shape of x_a, {tuple(x_a.shape)}, got {tuple(x_b.shape)}"
        )
    check_fits(model, x_a, y, name="x_a")


@checked_by(_check_worst_case_args)
@torch.no_grad()
def keep_worst_case(model, x_a, x_b, y, targeted=False):
    """Per sample, keep the run that succeeds; among equals, the one with the better loss
    (higher for an untargeted attack, lower target loss for a targeted one)."""
    logits_a, logits_b = model(x_a), model(x_b)  # (B, K)
    loss_a = F.cross_entropy(logits_a, y, reduction="none")  # (B,)
    loss_b = F.cross_entropy(logits_b, y, reduction="none")
    if targeted:  # success = the target is predicted; lower target loss is better
        ok_a, ok_b = logits_a.argmax(1) == y, logits_b.argmax(1) == y
        loss_a, loss_b = -loss_a, -loss_b
    else:  # success = the true class is no longer predicted; higher loss is better
        ok_a, ok_b = logits_a.argmax(1) != y, logits_b.argmax(1) != y
    take_b = (ok_b & ~ok_a) | ((ok_b == ok_a) & (loss_b > loss_a))  # (B,)
    return torch.where(take_b.view(-1, *([1] * (x_a.ndim - 1))), x_b, x_a)


def _check_attack_args(x, y, eps, alpha=None, steps=0, norm="linf", restarts=1, y_name="y"):
    check_pixels(x, "x")
    check_labels(x, y, y_name)
    check_nonnegative(eps, "eps")
    if alpha is not None:
        check_positive(alpha, "alpha")
    check_count(steps, "steps", minimum=0)
    check_choice(norm, "norm", THREATS)
    check_count(restarts, "restarts", minimum=1)
