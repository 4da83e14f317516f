r"""Friendly Adversarial Training (FAT; Zhang, Xu, Han, Niu, Cui, Sugiyama & Kankanhalli, 2020).

Strong attacks push training points far across the decision boundary, where they look like the
other class and hurt generalisation. FAT solves the inner problem only "as far as needed": it
searches for the least adversarial example that is still misclassified (with a margin),

.. math::  \tilde x_i = \arg\min_{x' \in B(x_i, \varepsilon)} \ell(f(x'), y_i)
           \ \text{ s.t. }\ \ell(f(x'), y_i) - \min_{y \in \mathcal{Y}} \ell(f(x'), y) \ge \rho,

approximated by early-stopped PGD, PGD-K-:math:`\tau` (:func:`pgd_early_stopped`): each sample
takes PGD steps until it is misclassified, then :math:`\tau` more, then stops. With
:math:`\tau \ge K` it never stops early and equals PGD-K. The TRADES variant
(:func:`fat_trades_loss`) runs the same early stopping on TRADES' KL inner loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import _check_attack_args, input_gradient
from ..threat import THREATS
from ..train import LossFn
from ..validate import check_count, check_nonnegative, check_positive
from .trades import trades_objective


def pgd_early_stopped(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    tau: int = 0,
    *,
    alpha: float | None = None,
    random_start: bool = True,
) -> torch.Tensor:
    r"""PGD-K-:math:`\tau` (Zhang et al., 2020, Algorithm 1), :math:`\ell_\infty`.

    Every sample gets a budget ``tau``. Before each of the ``steps`` (K) steps the model classifies
    the current iterates: a misclassified sample with budget 0 is frozen there; a misclassified
    sample with budget left spends one and keeps climbing; a correct one keeps climbing. After K
    steps the rest is returned as is. ``tau >= steps`` never freezes anything (PGD-K);
    ``tau = 0`` stops each sample at its first misclassified iterate.

    ``alpha`` defaults to :math:`2.5\varepsilon/K` as in :func:`course_lib.attacks.pgd`, and the
    random start is the same uniform draw, so with equal seeds ``tau >= steps`` reproduces
    ``pgd(..., steps=K)`` exactly. Deviations from the reference code (``earlystop.py``): samples
    stay in their input order (the reference returns the batch reordered, frozen ones first, with
    the labels reordered alike), and no :math:`\omega\,\mathcal N(0, 1)` noise is added to the
    steps (the reference adds it with :math:`\omega = 0.001`).
    """
    alpha = _early_stop_args(x, y, eps, steps, tau, alpha)
    x_adv = THREATS["linf"].random_start(x, eps) if random_start else x.clone()
    grad_fn = lambda xs, idx: input_gradient(model, xs, y[idx])  # noqa: E731  CE ascent
    return _early_stopped_ascent(model, x, y, x_adv, eps, steps, tau, alpha, grad_fn)


def _early_stop_args(x, y, eps, steps, tau, alpha) -> float:
    """Validate the arguments of an early-stopped attack; return the step size (default
    :math:`2.5\varepsilon/K`, as :func:`course_lib.attacks.pgd`)."""
    _check_attack_args(x, y, eps, alpha, steps)
    check_count(steps, "steps", minimum=1)
    check_count(tau, "tau", minimum=0)
    return 2.5 * eps / steps if alpha is None else alpha


def _early_stopped_ascent(model, x, y, x_adv, eps, steps, tau, alpha, grad_fn) -> torch.Tensor:
    """The loop of PGD-K-tau from ``x_adv``: ``grad_fn(x_active, idx)`` gives the ascent direction
    of the active samples ``idx``; each step is signed, projected onto the ball and [0, 1]."""
    linf = THREATS["linf"]
    budget = torch.full_like(y, tau)  # (B,)
    active = torch.ones_like(y, dtype=torch.bool)  # (B,)
    for _ in range(steps):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        with torch.no_grad():
            wrong = model(x_adv[idx]).argmax(1) != y[idx]  # (A,)
        freeze = wrong & (budget[idx] == 0)
        budget[idx[wrong & ~freeze]] -= 1
        active[idx[freeze]] = False
        idx = idx[~freeze]
        if idx.numel() == 0:
            break
        grad = grad_fn(x_adv[idx], idx)  # (A, ...)
        x_adv[idx] = linf.project(x_adv[idx] + linf.step(grad, alpha), x[idx], eps)
    return x_adv.detach()


def fat_tau(epoch: int, epochs: int) -> int:
    r"""FAT's dynamic :math:`\tau` (reference ``FAT.py``, 120 epochs: 0 up to epoch 50, 1 up to
    90, then 2), as fractions of ``epochs`` so that shorter runs keep the same shape."""
    check_count(epoch, "epoch", minimum=0)
    check_count(epochs, "epochs", minimum=1)
    frac = epoch / epochs
    return 0 if frac <= 50 / 120 else 1 if frac <= 90 / 120 else 2


def fat_loss(eps: float, steps: int = 10, tau: int = 0, alpha: float | None = None) -> LossFn:
    r"""FAT's outer minimisation on PGD-K-:math:`\tau` examples,
    :math:`\frac1B\sum_i \ell(f_\theta(\tilde x_i), y_i)`. As :func:`pgd_at_loss`, the attack runs
    on the model in its current (training) mode; the reference attacks in eval mode (the same for
    networks without BatchNorm or dropout, such as the course's CNN)."""
    check_nonnegative(eps, "eps")
    check_count(tau, "tau", minimum=0)
    check_count(steps, "steps", minimum=1)
    if alpha is not None:
        check_positive(alpha, "alpha")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = pgd_early_stopped(model, x, y, eps, steps, tau, alpha=alpha)
        return F.cross_entropy(model(x_adv), y)

    return loss_fn


def trades_early_stopped(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    tau: int = 0,
    *,
    alpha: float | None = None,
) -> torch.Tensor:
    r"""FAT for TRADES (reference ``FAT_for_TRADES.py``): PGD-K-:math:`\tau` on TRADES' inner loss
    :math:`\mathrm{KL}(f(x) \,\|\, f(x'))` instead of the cross-entropy, from TRADES' start
    :math:`x + 0.001\,\mathcal N(0, I)`, freezing a sample :math:`\tau` steps after its iterate is
    first misclassified (w.r.t. the label ``y``). With ``tau >= steps`` and equal seeds it
    reproduces :func:`course_lib.defenses.trades.trades_attack` exactly. Deviation: the batch keeps
    its order (see :func:`pgd_early_stopped`)."""
    alpha = _early_stop_args(x, y, eps, steps, tau, alpha)
    with torch.no_grad():
        p_nat = F.softmax(model(x), dim=1)  # (B, K), the fixed target

    def kl_gradient(xs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xs = xs.detach().requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(xs), 1), p_nat[idx], reduction="sum")
            return torch.autograd.grad(kl, xs)[0]

    x_adv = x.detach() + 0.001 * torch.randn_like(x)  # not yet in [0, 1], as in the reference
    x_adv = _early_stopped_ascent(model, x, y, x_adv, eps, steps, tau, alpha, kl_gradient)
    return THREATS["linf"].project(x_adv, x, eps)  # a sample frozen at its start lands in [0, 1]


def fat_trades_tau(epoch: int, epochs: int) -> int:
    r"""FAT-TRADES' dynamic :math:`\tau` (reference, 85 epochs: 0 up to epoch 30, 1 up to 50, 2 up
    to 70, then 3), as fractions of ``epochs``."""
    check_count(epoch, "epoch", minimum=0)
    check_count(epochs, "epochs", minimum=1)
    frac = epoch / epochs
    return sum(frac > edge / 85 for edge in (30, 50, 70))


def fat_trades_loss(
    beta: float, eps: float, steps: int = 10, tau: int = 0, alpha: float | None = None
) -> LossFn:
    r"""FAT-TRADES' outer minimisation: :func:`course_lib.defenses.trades.trades_objective`
    (CE on :math:`x` + :math:`\beta`·KL, gradient through both branches) at the early-stopped
    :math:`x'` of :func:`trades_early_stopped`. Reference: :math:`\beta = 6`, K = 10."""
    check_nonnegative(beta, "beta")
    check_nonnegative(eps, "eps")
    check_count(steps, "steps", minimum=1)
    check_count(tau, "tau", minimum=0)
    if alpha is not None:
        check_positive(alpha, "alpha")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = trades_early_stopped(model, x, y, eps, steps, tau, alpha=alpha)
        return trades_objective(model, x, x_adv, y, beta)

    return loss_fn
