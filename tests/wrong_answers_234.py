"""Typical wrong answers to the exercises of chapters 2-4, each with the words its diagnosis must
contain (data for test_exercises.py, which tests every chapter's table the same way)."""

import math

import torch
import torch.nn.functional as F

from course_lib.exercises.adversarial_training import (
    check_cat_update_eps,
    check_pgd_early_stopped,
)
from course_lib.exercises.naive_defenses import check_eot_log_probs, check_straight_through
from course_lib.exercises.regularization import check_cure_penalty, check_trades_objective


def _st(fn):
    return lambda transform, x: fn(transform, x)


def _eot(aggregate):
    def eot(model, x, samples):
        logits = torch.stack([model(x) for _ in range(samples)])  # (k, B, K)
        return aggregate(logits, samples)

    return eot


def _early(model, x, y, eps, alpha, steps, tau, *, stop_at_first=False, never=False, extra=0):
    x_adv, budget = x.clone(), torch.full_like(y, 0 if stop_at_first else tau + extra)
    active = torch.ones_like(y, dtype=torch.bool)
    for _ in range(steps):
        wrong = model(x_adv).argmax(1) != y
        if not never:
            active &= ~(wrong & (budget == 0))
            budget -= (wrong & active).long()
        x_req = x_adv.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x_req), y, reduction="sum"), x_req)
        step = torch.min(torch.max(x_adv + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
        x_adv = torch.where(active.view(-1, 1, 1, 1), step, x_adv).detach()
    return x_adv


def _cat(rule):
    def update(model, x_adv, y, eps_i, eta, eps_max):
        resisted = model(x_adv).argmax(1) == y
        return rule(resisted, eps_i, eta, eps_max)

    return update


def _trades(kl_args, reduction="batchmean", ce_on_adv=False, detach_clean=False):
    def objective(model, x, x_adv, y, beta):
        f, f_adv = model(x), model(x_adv)
        p = f.detach() if detach_clean else f
        ce = F.cross_entropy(f_adv if ce_on_adv else f, y)
        a, b = kl_args(p, f_adv)
        return ce + beta * F.kl_div(F.log_softmax(b, 1), F.softmax(a, 1), reduction=reduction)

    return objective


def _cure(direction, square=True, mean=False, create_graph=True):
    def penalty(loss, x, h):
        x0 = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(x0).sum(), x0)
        z = direction(g.flatten(1)).view_as(x)
        x1 = x.detach().clone().requires_grad_(True)
        diff = loss(x1 + h * z) - loss(x1)
        (dg,) = torch.autograd.grad(diff.mean() if mean else diff.sum(), x1, create_graph=True)
        out = dg.flatten(1).pow(2).sum(1)
        out = out if square else out.sqrt()
        return out if create_graph else out.detach()

    return penalty


def _unit_sign(g):
    return g.sign() / g.sign().norm(dim=1, keepdim=True)


WRONG = {
    check_straight_through: [
        (_st(lambda g, x: g(x)), "you differentiated through the transform"),
        (_st(lambda g, x: x.clone()), "the forward pass returns x itself"),
        (_st(lambda g, x: x + g(x).detach()), "you returned x + g(x)"),
        (_st(lambda g, x: g(x).detach()), "a gradient reaches x"),
    ],
    check_eot_log_probs: [
        (_eot(lambda f, k: F.log_softmax(f.mean(0), 1)), "you averaged the logits"),
        (_eot(lambda f, k: F.log_softmax(f, 2).mean(0)), "a geometric mean"),
        (_eot(lambda f, k: torch.logsumexp(F.log_softmax(f, 2), 0)), "without dividing by k"),
        (_eot(lambda f, k: F.softmax(f, 2).mean(0)), "return their log"),
        (lambda m, x, k: F.log_softmax(m(x), 1), "one draw of the randomness"),
        (
            _eot(lambda f, k: (torch.logsumexp(F.log_softmax(f, 2), 0) - math.log(k)).detach()),
            "a gradient reaches x",
        ),
    ],
    check_pgd_early_stopped: [
        (lambda *a: _early(*a, never=True), "no sample ever stops"),
        (lambda *a: _early(*a, stop_at_first=True), "τ is ignored"),
        (lambda *a: _early(*a, extra=1), "one step too many"),
        (lambda m, x, y, eps, alpha, steps, tau: x.clone(), "agrees with course_lib"),
    ],
    check_cat_update_eps: [
        (_cat(lambda r, e, eta, mx: torch.where(~r, (e + eta).clamp(max=mx), e)), "erratum"),
        (_cat(lambda r, e, eta, mx: torch.where(r, e + eta, e)), "not capped at eps_max"),
        (_cat(lambda r, e, eta, mx: (e + eta).clamp(max=mx)), "every budget grew"),
        (_cat(lambda r, e, eta, mx: e.add_(eta * r).clamp_(max=mx)), "modified in place"),
    ],
    check_trades_objective: [
        (_trades(lambda p, q: (q, p)), "the wrong way round"),
        (_trades(lambda p, q: (p, q), reduction="mean"), "reduction='mean'"),
        (_trades(lambda p, q: (p, q), reduction="sum"), "reduction='sum'"),
        (_trades(lambda p, q: (p, q), ce_on_adv=True), "on the adversarial x'"),
        (_trades(lambda p, q: (p, q), detach_clean=True), "is detached"),
    ],
    check_cure_penalty: [
        (_cure(_unit_sign, square=False), "the norm is not squared"),
        (_cure(lambda g: g / g.norm(dim=1, keepdim=True)), "raw gradient"),
        (_cure(torch.sign), "not normalised to unit ℓ2 length"),
        (_cure(_unit_sign, mean=True), "batch *mean*"),
        (_cure(_unit_sign, create_graph=False), "create_graph=True"),
    ],
}
