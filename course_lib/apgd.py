r"""Auto-PGD (Croce & Hein, 2020) and the per-sample worst case over a list of attacks.

APGD is PGD without a step size to tune. It starts with :math:`\eta = 2\varepsilon`, adds
momentum (0.75), and at checkpoints :math:`w_j` (the first at :math:`0.22N`, the gaps shrinking by
:math:`0.03N` down to :math:`0.06N`) halves a sample's step and restarts it from its best point when

1. at most 75% of the steps since the last checkpoint raised its loss, or
2. its step was not halved at the last checkpoint and its best loss has not improved since.

The losses are the cross-entropy and the Difference of Logits Ratio, invariant to shifting and
scaling the logits (so a network cannot hide behind a saturated softmax):

.. math::  \mathrm{DLR}(z, y) = -\frac{z_y - \max_{i \ne y} z_i}{z_{\pi_1} - z_{\pi_3}},\qquad
           \mathrm{DLR}_t(z, y) = -\frac{z_y - z_t}{z_{\pi_1} - \tfrac12(z_{\pi_3} + z_{\pi_4})},

with :math:`\pi` the logits sorted in decreasing order and :math:`t` a target class.

The per-sample worst case over APGD-CE and APGD-T (AutoAttack's gradient attacks) is in
:mod:`course_lib.worst_case`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .validate import check_choice, check_count, check_labels, check_nonnegative, check_pixels

APGD_LOSSES = ("ce", "dlr")
NORMS = ("linf", "l2")
_TINY = 1e-12  # as in the reference code


def dlr_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Untargeted DLR loss per sample, :math:`-(z_y - \max_{i\ne y} z_i)/(z_{\pi_1} - z_{\pi_3}
    + 10^{-12})`. ``z`` is ``(B, K)`` with ``K >= 3`` (it needs a third-largest logit; a
    binary model has none); returns ``(B,)``."""
    _check_classes(z, 3, "dlr_loss")
    z_sorted, order = z.sort(dim=1)  # ascending: (B, K)
    y_is_top = (order[:, -1] == y).float()  # (B,)
    z_y = z.gather(1, y[:, None]).squeeze(1)
    best_other = z_sorted[:, -2] * y_is_top + z_sorted[:, -1] * (1.0 - y_is_top)
    return -(z_y - best_other) / (z_sorted[:, -1] - z_sorted[:, -3] + _TINY)


def dlr_loss_targeted(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    r"""Targeted DLR loss per sample, :math:`-(z_y - z_t)/(z_{\pi_1} - \frac12(z_{\pi_3} +
    z_{\pi_4}) + 10^{-12})`. ``z`` is ``(B, K)`` with ``K >= 4`` (it needs a fourth-largest
    logit); returns ``(B,)``."""
    _check_classes(z, 4, "dlr_loss_targeted")
    z_sorted, _ = z.sort(dim=1)  # (B, K)
    z_y, z_t = z.gather(1, y[:, None]).squeeze(1), z.gather(1, t[:, None]).squeeze(1)
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + _TINY)


def _check_classes(z: torch.Tensor, minimum: int, loss: str) -> None:
    if z.ndim != 2 or z.shape[1] < minimum:
        raise ValueError(
            f"{loss} needs logits z of shape (B, K) with K >= {minimum} classes, "
            f"got shape {tuple(z.shape)}"
        )


def checkpoints(steps: int) -> list[int]:
    r"""The iterations (0-based) after which APGD checks its step size: the first after
    :math:`\lfloor 0.22N\rfloor` steps, each next gap shorter by :math:`\lfloor 0.03N\rfloor`, never
    below :math:`\lfloor 0.06N \rfloor` (each at least 1). For N = 100: 21, 40, 56, 69, ..."""
    p, decrease = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1)
    p_min = max(int(0.06 * steps), 1)
    points, i = [], p - 1
    while i < steps:
        points.append(i)
        p = max(p - decrease, p_min)
        i += p
    return points


class APGDRun(NamedTuple):
    """One APGD run: the highest-loss point (``x_best``), whether each sample was still classified
    correctly at every iterate (``robust``), that best loss, a fooling iterate where one was found
    (``x_best_adv``, else the start), the final step sizes ``eta`` ``(B,)`` and the iterations
    (0-based) at which the step size was checked."""

    x_best: torch.Tensor
    robust: torch.Tensor
    loss_best: torch.Tensor
    x_best_adv: torch.Tensor
    eta: torch.Tensor
    checked_at: list[int]


def apgd_run(model, x, y, eps, x_start, loss_fn, steps, norm="linf", rho=0.75) -> APGDRun:
    """One APGD climb from ``x_start`` maximising ``loss_fn(logits, y) -> (B,)``, the loop of
    Croce & Hein's ``attack_single_run`` line by line (no argument checks, no restarts)."""
    project, step = (_project_linf, _step_linf) if norm == "linf" else (_project_l2, _step_l2)
    B = x.shape[0]
    x_adv = x_start.detach().clone()
    loss, grad, logits = _loss_and_grad(model, x_adv, y, loss_fn)
    robust = logits.argmax(1) == y  # (B,)
    x_best, x_best_adv, loss_best = x_adv.clone(), x_adv.clone(), loss.clone()
    grad_best, checked_at = grad.clone(), []
    eta = torch.full((B, *[1] * (x.ndim - 1)), 2.0 * eps, device=x.device, dtype=x.dtype)
    loss_steps = torch.zeros(steps, B, device=x.device)  # loss after every step
    x_old = x_adv.clone()
    k, since_check = max(int(0.22 * steps), 1), 0
    decrease, k_min = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones(B, dtype=torch.bool, device=x.device)
    for i in range(steps):
        with torch.no_grad():
            momentum_dir = x_adv - x_old
            x_old = x_adv
            a = 0.75 if i > 0 else 1.0  # no momentum on the first step
            z = project(x_adv + step(grad, eta), x, eps)
            x_adv = project(x_adv + (z - x_adv) * a + momentum_dir * (1 - a), x, eps)
        loss, grad, logits = _loss_and_grad(model, x_adv, y, loss_fn)
        with torch.no_grad():
            fooled = logits.argmax(1) != y  # (B,)
            robust &= ~fooled
            x_best_adv[fooled] = x_adv[fooled]
            loss_steps[i] = loss
            better = loss > loss_best  # (B,)
            x_best[better], grad_best[better], loss_best[better] = (
                x_adv[better],
                grad[better],
                loss[better],
            )
            since_check += 1
            if since_check == k:  # a checkpoint
                idx = i - torch.arange(k, device=x.device)
                raised = (loss_steps[idx] > loss_steps[(idx - 1) % steps]).float().sum(0)  # (B,)
                stalled = ~reduced_last_check & (loss_best_last_check >= loss_best)  # (B,)
                halve = (raised <= k * rho) | stalled
                reduced_last_check, loss_best_last_check = halve, loss_best.clone()
                eta[halve] /= 2.0
                x_adv[halve], grad[halve] = (
                    x_best[halve],
                    grad_best[halve],
                )  # back to the best point
                since_check, k = 0, max(k - decrease, k_min)
                checked_at.append(i)
    return APGDRun(x_best, robust, loss_best, x_best_adv, eta.flatten(), checked_at)


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    loss: str = "ce",
    steps: int = 100,
    norm: str = "linf",
    restarts: int = 1,
) -> torch.Tensor:
    r"""APGD-CE or APGD-DLR, untargeted (Croce & Hein, 2020, Algorithm 1; AutoAttack's defaults:
    :math:`\eta^{(0)} = 2\varepsilon`, momentum :math:`\alpha = 0.75`, :math:`\rho = 0.75`).

    Each restart starts from a random point of the ball (for :math:`\ell_\infty` a uniform draw
    rescaled so that its largest coordinate reaches :math:`\varepsilon`, as in the reference
    code) and runs only on the samples no earlier restart fooled. Per sample, returns an iterate
    that fools the model if any did, else the highest-loss iterate of the **last** restart (never
    below that restart's starting loss; with ``restarts > 1`` the best points of earlier restarts
    are not kept, so the returned loss may be below an earlier restart's best). Deviation from the
    reference: it returns the clean input for samples it did not fool; we return the best point
    found, which makes the attack chainable. ``loss="dlr"`` needs a model with at least 3 classes.
    """
    _check(x, y, eps, steps, norm, restarts)
    check_choice(loss, "loss", APGD_LOSSES)
    if eps == 0:
        return x.clone()
    loss_fn = _ce if loss == "ce" else dlr_loss
    return _with_restarts(model, x, y, eps, norm, restarts, steps, lambda xs, ys, _: loss_fn)


def apgd_targeted(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 100,
    norm: str = "linf",
    n_target_classes: int = 9,
) -> torch.Tensor:
    r"""APGD-T: APGD on the targeted DLR loss, once for each of the ``n_target_classes`` classes
    ranked highest by the clean logits after the top one (AutoAttack: 9 targets, 1 restart each),
    each run on the samples no earlier target fooled. Returns per sample a fooling point if any
    run found one, else the last run's highest-loss point. Needs a model with ``K >= 4`` classes
    (the targeted DLR loss) and ``1 <= n_target_classes <= K - 1``."""
    _check(x, y, eps, steps, norm, 1)
    check_count(n_target_classes, "n_target_classes", minimum=1)
    with torch.no_grad():
        num_classes = model(x[:1]).shape[1]
    if num_classes < 4:
        raise ValueError(
            f"apgd_targeted needs a model with K >= 4 classes (targeted DLR), got K = {num_classes}"
        )
    if n_target_classes > num_classes - 1:
        raise ValueError(
            f"n_target_classes must be in [1, K - 1] = [1, {num_classes - 1}], "
            f"got {n_target_classes}"
        )
    if eps == 0:
        return x.clone()

    def targeted(xs: torch.Tensor, ys: torch.Tensor, r: int):
        with torch.no_grad():
            t = model(xs).sort(dim=1)[1][:, -(r + 2)]  # the (r+2)-th largest clean logit
        return lambda z, y_: dlr_loss_targeted(z, y_, t)

    return _with_restarts(model, x, y, eps, norm, n_target_classes, steps, targeted)


def _with_restarts(model, x, y, eps, norm, runs, steps, make_loss):
    """``runs`` APGD climbs, each on the samples still classified correctly (``make_loss(x, y,
    run)`` gives the loss of each run)."""
    x_adv = x.clone()
    with torch.no_grad():
        robust = model(x).argmax(1) == y  # (B,)
    for r in range(runs):
        idx = robust.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xs, ys = x[idx], y[idx]
        loss_fn = make_loss(xs, ys, r)
        run = apgd_run(model, xs, ys, eps, _random_start(xs, eps, norm), loss_fn, steps, norm)
        x_adv[idx] = torch.where(_col(~run.robust, x), run.x_best_adv, run.x_best)
        robust[idx] = run.robust
    return x_adv.detach()


# ----- the pieces of the loop ----------------------------------------------------------------


def _ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z, y, reduction="none")


def _loss_and_grad(model, x_adv, y, loss_fn):
    """Per-sample loss ``(B,)``, its input gradient, and the logits."""
    with torch.enable_grad():
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)  # (B, K)
        loss = loss_fn(logits, y)  # (B,)
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
    return loss.detach(), grad.detach(), logits.detach()


def _col(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.ndim - 1)))


def _norm2(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))  # (B, 1, ..., 1)


def _random_start(x, eps, norm):
    if norm == "linf":  # uniform, rescaled so that the largest coordinate is exactly eps
        t = 2 * torch.rand_like(x) - 1
        t = t / t.flatten(1).abs().amax(1).view(-1, *([1] * (x.ndim - 1)))
    else:  # a Gaussian direction on the sphere of radius eps
        t = torch.randn_like(x)
        t = t / (_norm2(t) + _TINY)
    return (x + eps * t).clamp(0.0, 1.0)


def _step_linf(grad, eta):
    return eta * grad.sign()


def _step_l2(grad, eta):
    return eta * grad / (_norm2(grad) + _TINY)


def _project_linf(z, x, eps):
    return torch.clamp(torch.min(torch.max(z, x - eps), x + eps), 0.0, 1.0)


def _project_l2(z, x, eps):
    delta = z - x
    size = _norm2(delta)
    return torch.clamp(x + delta / (size + _TINY) * torch.clamp(size, max=eps), 0.0, 1.0)


def _check(x, y, eps, steps, norm, restarts):
    check_pixels(x)
    check_labels(x, y)
    check_nonnegative(eps, "eps")
    check_count(steps, "steps", minimum=1)
    check_choice(norm, "norm", NORMS)
    check_count(restarts, "restarts", minimum=1)
