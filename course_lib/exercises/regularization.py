r"""Checkers for the exercises of chapter 4: the TRADES objective (Zhang et al., 2019) and CURE's
finite-difference curvature penalty (Moosavi-Dezfooli et al., 2019).

Both are training losses, so each checker compares the value *and* the gradient that reaches the
weights with :func:`course_lib.defenses.trades.trades_objective` and
:func:`course_lib.defenses.regularizers.cure_penalty`: detaching the wrong term leaves the value
right and the training wrong. CURE is also checked on a quadratic loss, where the penalty has the
closed form :math:`h^2\|A z\|_2^2`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..defenses.regularizers import cure_penalty
from ..defenses.trades import trades_objective
from . import Checker, as_tensor, close, show, tiny_model
from .primer import _inputs


def _weight_grads(model, value) -> torch.Tensor | None:
    """The gradient of ``value`` on all weights, flattened; None when nothing reaches them."""
    if not (isinstance(value, torch.Tensor) and value.requires_grad):
        return None
    params = list(model.parameters())
    grads = torch.autograd.grad(value.sum(), params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    return torch.cat([g.flatten() for g in grads]).double()


def _confident_model(seed: int):
    """A tiny net with large logits (confident, so KL(p‖q) and KL(q‖p) differ)."""
    model = tiny_model((1, 4, 4), (16,), 3, seed)
    with torch.no_grad():
        model[-1].weight.mul_(6.0)
    return model


def _trades_variants(model, x, x_adv, y, beta) -> dict[str, torch.Tensor]:
    logits, logits_adv = model(x), model(x_adv)
    ce = F.cross_entropy(logits, y)

    def kl(p_logits, q_logits, reduction="batchmean"):  # KL(softmax p || softmax q)
        with warnings.catch_warnings():  # torch warns that 'mean' is not 'batchmean'
            warnings.simplefilter("ignore", UserWarning)
            return F.kl_div(F.log_softmax(q_logits, 1), F.softmax(p_logits, 1), reduction=reduction)

    return {
        "the KL is the wrong way round, KL(f(x') ‖ f(x)); TRADES uses KL(f(x) ‖ f(x')): "
        "F.kl_div(log_softmax(f(x')), softmax(f(x))), the *input* is the adversarial "
        "log-probability.": ce + beta * kl(logits_adv, logits),
        "the KL uses reduction='mean', which divides by B·K; the reference uses 'batchmean' "
        "(divide by B only).": ce + beta * kl(logits, logits_adv, "mean"),
        "the KL is summed over the batch (reduction='sum'); use 'batchmean'.": ce
        + beta * kl(logits, logits_adv, "sum"),
        "the cross-entropy is on the adversarial x'; TRADES keeps it on the clean x and "
        "lets the KL do the robustness.": F.cross_entropy(logits_adv, y)
        + beta * kl(logits, logits_adv),
        "β is missing: CE + KL.": ce + kl(logits, logits_adv),
        "this is CE alone: the KL term is missing.": ce,
        "β multiplies the cross-entropy instead of the KL.": beta * ce + kl(logits, logits_adv),
    }


def check_trades_objective(student_fn: Callable) -> None:
    r"""Check ``trades_objective(model, x, x_adv, y, beta) -> scalar``:
    :math:`\mathrm{CE}(f(x), y) + \beta\,\mathrm{KL}(f(x) \| f(x'))`, ``batchmean``, with the
    gradient through both :math:`f(x)` and :math:`f(x')`."""
    c = Checker("trades_objective")
    for seed, beta in [(0, 6.0), (1, 0.5)]:
        model, (x, y) = _confident_model(seed), _inputs(seed)
        x_adv = _inputs(seed + 10)[0]  # far from x: the two KL directions differ clearly
        on = f"a tiny net (seed {seed}), a batch of 32, x' another random batch, beta={beta}"
        out = c.call(student_fn, model, x, x_adv, y, beta, on=on)
        got = as_tensor(out, c.exercise, "a scalar tensor", on)
        c.expect(got.ndim == 0, "returns a scalar", on, "shape ()", str(tuple(got.shape)))
        ref = trades_objective(model, x, x_adv, y, beta)
        variants = {
            k: v.detach().double() for k, v in _trades_variants(model, x, x_adv, y, beta).items()
        }
        c.mistake(got, ref.detach().double(), variants, on, f"{float(ref.detach()):.6g}")
        c.expect(close(got, ref), "the value agrees with the reference", on, show(ref), show(got))
        g_ref, g_got = _weight_grads(model, ref), _weight_grads(model, out)
        c.expect(
            g_got is not None,
            "a gradient reaches the weights",
            on,
            "a loss that requires grad",
            "a detached value",
            "no .item(), .detach() or torch.no_grad() around the loss",
        )
        logits = model(x).detach()
        detached = F.cross_entropy(model(x), y) + beta * F.kl_div(
            F.log_softmax(model(x_adv), 1), F.softmax(logits, 1), reduction="batchmean"
        )
        c.mistake(
            g_got,
            g_ref,
            {
                "the clean distribution softmax(f(x)) inside the KL is detached; the reference "
                "lets the gradient reach the weights through both f(x) and f(x').": _weight_grads(
                    model, detached
                )
            },
            f"{on}, the gradient on the weights",
            "the reference's gradient",
        )
        c.expect(close(g_got, g_ref), "the weight gradient agrees", on, show(g_ref), show(g_got))
    model, (x, y) = tiny_model((1, 4, 4), (16,), 3, 2), _inputs(2)
    on = "x' = x (no perturbation), beta=6"
    got = as_tensor(c.call(student_fn, model, x, x.clone(), y, 6.0, on=on), c.exercise, "", on)
    ce = F.cross_entropy(model(x), y)
    c.expect(
        close(got, ce), "x' = x gives the plain cross-entropy (KL = 0)", on, show(ce), show(got)
    )
    c.done()


def _quadratic(d: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=gen, dtype=torch.float64)
    A = m @ m.T / d + torch.eye(d, dtype=torch.float64)  # symmetric positive definite
    return A, lambda z: 0.5 * ((z @ A) * z).sum(1)  # (B, d) -> (B,)


def _cure_variants(loss, x, h) -> dict[str, torch.Tensor]:
    x0 = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(x0).sum(), x0)
    s = g.sign().flatten(1)
    unit = (s / s.norm(dim=1, keepdim=True)).view_as(x)
    raw = (g.flatten(1) / g.flatten(1).norm(dim=1, keepdim=True)).view_as(x)

    def pen(z, mean=False):
        x1 = x.clone().requires_grad_(True)
        diff = loss(x1 + h * z) - loss(x1)
        total = diff.mean() if mean else diff.sum()
        (dg,) = torch.autograd.grad(total, x1)
        return dg.flatten(1).pow(2).sum(1).double()

    ref = pen(unit)
    return {
        "the norm is not squared: the penalty is ‖∇ℓ(x + hz) − ∇ℓ(x)‖₂².": ref.sqrt(),
        "z follows the raw gradient ∇ℓ/‖∇ℓ‖; CURE's z is its sign, normalised: "
        "sign(∇ℓ)/‖sign(∇ℓ)‖₂.": pen(raw),
        "z = sign(∇ℓ) is not normalised to unit ℓ2 length (divide by ‖sign(∇ℓ)‖₂ = √d).": pen(
            unit * s.norm(dim=1).view(-1, *[1] * (x.ndim - 1))
        ),
        "you differentiated the batch *mean* of the losses, which scales every gradient by "
        "1/B (the penalty by 1/B²); differentiate their sum, so each sample gets its own "
        "gradient.": pen(unit, mean=True),
    }


def check_cure_penalty(student_fn: Callable) -> None:
    r"""Check ``cure_penalty(loss, x, h) -> (B,)``, per sample
    :math:`\|\nabla\ell(x + hz) - \nabla\ell(x)\|_2^2`
    with :math:`z = \mathrm{sign}(\nabla\ell(x))/\|\mathrm{sign}(\nabla\ell(x))\|_2`."""
    c = Checker("cure_penalty")
    A, quad = _quadratic()
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for h in (0.5, 2.0):
        on = f"the quadratic loss ℓ(x) = ½ xᵀAx (A 6×6 positive definite), 8 points, h={h}"
        got = as_tensor(c.call(student_fn, quad, x, h, on=on), c.exercise, "a tensor (B,)", on)
        c.expect(got.shape == (8,), "returns one penalty per sample", on, "(8,)", str(got.shape))
        z = (x @ A).sign() / math.sqrt(6)  # (B, d)
        exact = h**2 * (z @ A).pow(2).sum(1)  # h² ‖A z‖²
        c.mistake(got, exact, _cure_variants(quad, x, h), on, "h²‖Az‖² (closed form)")
        c.agrees(got, exact, "closed form h²‖Az‖² on a quadratic", on)
    for seed, h in [(0, 0.5), (1, 1.5)]:
        model, (xb, y) = tiny_model((1, 4, 4), (16,), 3, seed), _inputs(seed, batch=16)
        loss = lambda z, m=model, t=y: F.cross_entropy(m(z), t, reduction="none")  # noqa: E731
        on = f"per-sample cross-entropy of a tiny net (seed {seed}), 16 images, h={h}"
        out = c.call(student_fn, loss, xb, h, on=on)
        got = as_tensor(out, c.exercise, "a tensor (B,)", on)
        ref = cure_penalty(loss, xb, h)
        c.mistake(got, ref.detach().double(), _cure_variants(loss, xb, h), on, "the penalty")
        c.expect(bool((got >= 0).all()), "the penalty is ≥ 0", on, "≥ 0", show(got.min()))
        c.expect(close(got, ref), "agrees with course_lib's cure_penalty", on, show(ref), show(got))
        g_ref, g_got = _weight_grads(model, ref), _weight_grads(model, out)
        c.expect(
            g_got is not None and close(g_got, g_ref),
            "its gradient reaches the weights (double back-propagation)",
            on,
            "the reference's weight gradient",
            "no gradient" if g_got is None else show(g_got),
            "the second torch.autograd.grad needs create_graph=True",
        )
    c.done()
