r"""Attacks that put a certified radius to the test: PGD inside a per-sample :math:`\ell_2` ball,
and the smallest adversarial perturbation found by a binary search over :math:`\varepsilon`.

A certificate says "no :math:`\delta` with :math:`\|\delta\|_2 < r(x)` changes the prediction".
An attack that finds one inside the radius proves the certificate (or its code) wrong, so every
certificate of the course is attacked with these. The converse does not hold: an attack that fails
proves nothing, so the radius :math:`\hat r(x)` found here is only an *upper* bound of the true
distance to the nearest adversarial example, and :math:`r(x) \le \hat r(x)` must hold for every
sample. Introduced in chapter 1; used again in chapter 5.
"""

from __future__ import annotations

import torch
from torch import nn

from ..attacks import input_gradient, keep_worst_case
from ..threat import perturbation_norm, project_l2, random_start_l2, step_l2
from ..train import predict
from ..validate import check_count, check_fits, check_labels, check_pixels, check_positive


def pgd_l2_per_sample(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    steps: int = 20,
    restarts: int = 1,
) -> torch.Tensor:
    r"""Untargeted :math:`\ell_2` PGD (Madry et al., 2018) where sample :math:`i` has its own
    radius :math:`\varepsilon_i` (``eps`` of shape ``(B,)``, all :math:`\ge 0`).

    Each restart starts from a uniformly random point of the ball, takes ``steps`` normalised
    gradient steps of size :math:`\alpha_i = 2.5\,\varepsilon_i/\text{steps}` and projects back
    (:func:`course_lib.threat.project_l2`, which accepts per-sample radii); restarts keep each
    sample's worst case (:func:`course_lib.attacks.keep_worst_case`).
    """
    _check_l2_attack(x, y, eps, steps, restarts)
    check_fits(model, x, y)
    r = eps.to(x.dtype).view(-1, *[1] * (x.ndim - 1))  # (B, 1, ..., 1)
    alpha = 2.5 * r / steps
    best = x.clone()
    for _ in range(restarts):
        x_adv = random_start_l2(x, r)  # uniform in each sample's ball
        for _ in range(steps):
            grad = input_gradient.__wrapped__(model, x_adv, y)  # (B, ...), checked above
            x_adv = project_l2(x_adv + step_l2(grad, alpha), x, r)
        best = keep_worst_case.__wrapped__(model, best, x_adv.detach(), y)
    return best


def pgd_l2_margin(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    steps: int = 30,
    restarts: int = 3,
) -> torch.Tensor:
    r""":func:`pgd_l2_per_sample` ascending the **logit margin**
    :math:`\max_{i \ne y} f_i(x') - f_y(x')` instead of the cross-entropy (Carlini & Wagner,
    2017): the quantity a Lipschitz certificate bounds, with a gradient that does not vanish when
    the softmax saturates or when a 1-Lipschitz net's logits are all close. Restarts keep, per
    sample, the point with the largest margin (a flip if one was found)."""
    _check_l2_attack(x, y, eps, steps, restarts)
    r = eps.to(x.dtype).view(-1, *[1] * (x.ndim - 1))  # (B, 1, ..., 1)
    alpha = 2.5 * r / steps
    best, best_margin = x.clone(), _margin(model, x, y)
    for _ in range(restarts):
        x_adv = random_start_l2(x, r)
        for _ in range(steps):
            with torch.enable_grad():
                x_req = x_adv.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(_margin(model, x_req, y).sum(), x_req)
            x_adv = project_l2(x_adv + step_l2(grad, alpha), x, r)
        margin = _margin(model, x_adv, y)  # (B,)
        better = margin > best_margin
        best = torch.where(better.view_as(r), x_adv.detach(), best)
        best_margin = torch.maximum(margin, best_margin).detach()
    return best


def _margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r""":math:`\max_{i \ne y} f_i(x) - f_y(x)` per sample, ``(B,)``: > 0 means misclassified."""
    f = model(x)  # (B, K)
    f_y = f.gather(1, y[:, None]).squeeze(1)
    others = f.masked_fill(torch.nn.functional.one_hot(y, f.shape[1]).bool(), -torch.inf)
    return others.amax(1) - f_y


def smallest_adversarial_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_max: float,
    steps: int = 20,
    search_steps: int = 8,
) -> torch.Tensor:
    r"""The :math:`\ell_2` norm of the smallest adversarial perturbation found per sample, ``(B,)``.

    A binary search over :math:`\varepsilon` run for all samples at once: sample :math:`i` keeps an
    interval :math:`[lo_i, hi_i]` (start :math:`[0, \varepsilon_{max}]`), is attacked with
    :func:`pgd_l2_per_sample` at the midpoint, and the interval halves towards the side where the
    attack failed or succeeded. Every success is a real adversarial example, and its norm (which
    can be below the :math:`\varepsilon` it was found at) is kept. A misclassified sample gets 0,
    a sample never fooled up to ``eps_max`` gets ``inf``.
    """
    check_pixels(x, "x")
    check_labels(x, y)
    check_positive(eps_max, "eps_max")
    check_count(search_steps, "search_steps", minimum=0)
    check_fits(model, x, y)
    wrong = predict(model, x) != y  # (B,) already adversarial at radius 0
    found = torch.where(wrong, 0.0, torch.inf).to(x.device)  # (B,)
    lo = torch.zeros(x.shape[0], device=x.device)
    hi = torch.full_like(lo, eps_max)
    for i in range(search_steps + 1):
        eps = hi if i == 0 else (lo + hi) / 2  # first try the largest budget
        x_adv = pgd_l2_per_sample(model, x, y, eps, steps)
        fooled = (predict(model, x_adv) != y) & ~wrong  # (B,)
        norms = perturbation_norm(x_adv, x, "l2")  # (B,)
        found = torch.where(fooled, torch.minimum(found, norms), found)
        hi = torch.where(fooled, torch.minimum(eps, norms), hi)
        lo = torch.where(fooled, lo, eps)
    return found


def _check_l2_attack(x, y, eps, steps, restarts) -> None:
    check_pixels(x, "x")
    check_labels(x, y)
    _check_radii(eps, x.shape[0], "eps")
    check_count(steps, "steps", minimum=1)
    check_count(restarts, "restarts", minimum=1)


def _check_radii(eps: torch.Tensor, batch: int, name: str) -> None:
    if not isinstance(eps, torch.Tensor) or tuple(eps.shape) != (batch,):
        raise ValueError(f"{name} must be a tensor of shape ({batch},), one radius per sample")
    if not torch.isfinite(eps).all() or (eps < 0).any():
        raise ValueError(f"{name} must hold finite radii >= 0")
