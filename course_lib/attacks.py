r"""Attacks: FGSM and PGD (untargeted and targeted) and the gradient-free SPSA, built on
:mod:`course_lib.threat`.

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

    ``alpha`` defaults to :math:`2.5\,\varepsilon/\text{steps}`, which lets the climb cross the
    ball from any start. This rule of thumb is *not* Madry et al.'s setting: they used
    :math:`\alpha = 0.01` with 40 steps at :math:`\varepsilon = 0.3` on MNIST and :math:`\alpha =
    2/255` with 7 steps at :math:`\varepsilon = 8/255` on CIFAR-10; :math:`2.5\,\varepsilon/
    \text{steps}` is the later heuristic recommended by the MadryLab ``robustness`` library
    (Engstrom et al., 2019).
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


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The logit margin :math:`z_y - \max_{j \ne y} z_j` per sample ``(B,)`` (Carlini & Wagner,
    2017): negative exactly when the prediction is wrong."""
    z_y = logits.gather(1, y[:, None])[:, 0]  # (B,)
    others = logits.scatter(1, y[:, None], float("-inf"))  # (B, K), the true class masked out
    return z_y - others.amax(1)


@torch.no_grad()
def square_attack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    queries: int = 300,
    p_init: float = 0.8,
    norm: str = "linf",
) -> torch.Tensor:
    r"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, 2020), a *gradient-free* random
    search that only reads the model's outputs, so masked or useless gradients do not stop it.

    Start from vertical stripes :math:`x + \varepsilon\,s_{\text{col}}` (random signs per
    column); then ``queries`` times, per sample, set a random square window of side
    :math:`\approx\sqrt{p\,HW}` (all channels) to :math:`x \pm \varepsilon` with a random sign per
    channel and keep the change if it lowers the margin :math:`z_y - \max_{j\ne y} z_j`
    (:func:`margin_loss`). :math:`p` starts at ``p_init`` and halves on the paper's schedule
    (rescaled from its 10 000 queries). Deviations: for ``l2`` the same windows with height
    :math:`\varepsilon/\text{side}` are added and projected onto the ball (a plain random search,
    not the paper's l2 update); inputs without an image shape ``(B, d)`` are treated as
    ``1 x d`` images. One forward pass per sample and query, batched over samples.
    """
    _check_attack_args(x, y, eps, None, 0, norm)
    check_count(queries, "queries", minimum=1)
    check_positive(p_init, "p_init")
    if eps == 0:
        return x.clone()
    threat = THREATS[norm]
    img = x.view(x.shape[0], 1, 1, -1) if x.ndim == 2 else x  # (B, C, H, W)
    B, C, H, W = img.shape
    cols = torch.randint(0, 2, (B, C, 1, W), device=x.device).to(x.dtype) * 2 - 1
    height = eps if norm == "linf" else eps / (H * W * C) ** 0.5  # the stripes fill the l2 ball
    best = threat.project((img + height * cols).view_as(x), x, eps)  # (B, ...)
    best_m = margin_loss(model(best), y)  # (B,)
    rows_i = torch.arange(H, device=x.device).view(1, 1, H, 1)
    cols_i = torch.arange(W, device=x.device).view(1, 1, 1, W)
    for i in range(queries):
        halvings = sum(i >= queries * t / 10_000 for t in (10, 50, 200, 500, 1000, 2000, 4000))
        side = max(1, min(H, W, round((p_init / 2**halvings * H * W) ** 0.5)))
        r = torch.randint(0, H - side + 1, (B, 1, 1, 1), device=x.device)
        c = torch.randint(0, W - side + 1, (B, 1, 1, 1), device=x.device)
        window = (rows_i >= r) & (rows_i < r + side) & (cols_i >= c) & (cols_i < c + side)
        sign = torch.randint(0, 2, (B, C, 1, 1), device=x.device).to(x.dtype) * 2 - 1
        current = best.view_as(img)
        if norm == "linf":  # the window jumps to a corner of the ball
            candidate = torch.where(window, img + eps * sign, current)
        else:
            candidate = current + window * sign * eps / side
        candidate = threat.project(candidate.view_as(x), x, eps)
        m = margin_loss(model(candidate), y)  # (B,)
        better = m < best_m
        best = torch.where(better.view(-1, *[1] * (x.ndim - 1)), candidate, best)
        best_m = torch.where(better, m, best_m)
    return best
