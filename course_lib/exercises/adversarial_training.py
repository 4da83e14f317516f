r"""Checkers for the exercises of chapter 3: FAT's early-stopped PGD (Zhang et al., 2020) and
CAT's per-sample budget update (Cheng et al., 2020).

The first compares with :func:`course_lib.defenses.fat.pgd_early_stopped` without its random
start; the second replays one call of :class:`course_lib.defenses.cat.CustomizedAT` with the same
random draws and compares the budgets it stores with the student's update.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attacks import input_gradient, pgd_climb
from ..defenses.cat import CustomizedAT, pgd_per_sample_eps
from ..defenses.fat import pgd_early_stopped
from ..threat import project_linf
from . import Checker, as_tensor, close, show, tiny_model
from .primer import _attack_basics, _in_box_and_ball, _inputs


def _variant(model, x, y, eps, alpha, steps, tau, *, check_after=False, whole_batch=False):
    """PGD-K-τ written with a typical mistake (the check after the step, or one freeze for the
    whole batch); a plain loop over steps, freezing rows of ``x_adv``."""
    x_adv, budget = x.clone(), torch.full_like(y, tau)
    active = torch.ones_like(y, dtype=torch.bool)
    for _ in range(steps):
        if not check_after:
            wrong = model(x_adv).argmax(1) != y
            active &= ~(wrong & (budget == 0))
            budget -= (wrong & active).long()
        if whole_batch and not active.all():
            break
        step = project_linf(x_adv + alpha * input_gradient(model, x_adv, y).sign(), x, eps)
        x_adv = torch.where(active.view(-1, 1, 1, 1), step, x_adv)
        if check_after:
            wrong = model(x_adv).argmax(1) != y
            active &= ~(wrong & (budget == 0))
            budget -= (wrong & active).long()
    return x_adv.detach().double()


def check_pgd_early_stopped(student_fn: Callable) -> None:
    r"""Check ``pgd_early_stopped(model, x, y, eps, alpha, steps, tau)`` from ``x`` (PGD-K-τ of
    FAT): a sample misclassified before a step with budget 0 is frozen; with budget left it
    spends one and keeps climbing."""
    c = Checker("pgd_early_stopped")
    for seed, eps, alpha, steps, tau in [(0, 0.3, 0.05, 10, 1), (1, 0.3, 0.05, 8, 2)]:
        model, (x, y) = tiny_model((1, 4, 4), (16,), 3, seed), _inputs(seed, batch=64)
        on = f"a random batch of 64 (seed {seed}), eps={eps}, alpha={alpha}, K={steps}, tau={tau}"

        def run(m=model, a=x, b=y, e=eps, al=alpha, s=steps, t=tau):
            return student_fn(m, a, b, e, al, s, t)

        got = _attack_basics(c, run, model, x, y, eps, on)
        ref = pgd_early_stopped(model, x, y, eps, steps, tau, alpha=alpha, random_start=False)
        ref = ref.double()
        early = pgd_early_stopped(model, x, y, eps, steps, 0, alpha=alpha, random_start=False)
        late = pgd_early_stopped(model, x, y, eps, steps, tau + 1, alpha=alpha, random_start=False)
        common = dict(model=model, x=x, y=y, eps=eps, alpha=alpha, steps=steps, tau=tau)
        mistakes = {
            "no sample ever stops: this is plain PGD-K; freeze a misclassified sample once its "
            "budget τ is spent.": pgd_climb(model, x, y, eps, alpha, steps, random_start=False),
            "τ is ignored: every sample stops at its first misclassified iterate (that is "
            "τ = 0); a misclassified sample with budget left spends one and takes another "
            "step.": early,
            "each sample takes one step too many after it is misclassified (τ + 1): check the "
            "budget before decrementing, freeze when it is 0.": late,
            "the check runs after the step: classify the current iterate *before* each step, "
            "so a sample misclassified at x with τ = 0 never moves.": _variant(
                **common, check_after=True
            ),
            "the whole batch stops when the first sample is frozen; the budget and the freeze "
            "are per sample (a boolean mask of active rows).": _variant(**common, whole_batch=True),
        }
        c.mistake(got, ref, {k: v.double() for k, v in mistakes.items()}, on, "PGD-K-τ")
        _in_box_and_ball(c, got, x, eps, "linf", on, "project around the clean x after a step")
        wrong0 = model(x).argmax(1) != y  # (B,)
        moved = (got[wrong0] - x[wrong0].double()).flatten(1).abs().amax(1)
        if tau == 0:
            c.expect(
                bool((moved == 0).all()), "misclassified at x → stays at x", on, "0", show(moved)
            )
        c.agrees(got, ref, "agrees with course_lib's pgd_early_stopped", on)
    model, (x, y) = tiny_model((1, 4, 4), (16,), 3, 0), _inputs(3, batch=64)
    on = "tau=0 on a batch where some samples are misclassified at x"
    got = as_tensor(
        c.call(student_fn, model, x, y, 0.3, 0.05, 6, 0, on=on), c.exercise, "x_adv", on
    )
    wrong0 = model(x).argmax(1) != y
    moved = (got[wrong0] - x[wrong0].double()).flatten(1).abs().amax(1)
    c.expect(
        bool((moved == 0).all()),
        "with τ = 0 a sample misclassified at x never moves",
        on,
        "0 for all of them",
        f"moved by up to {float(moved.max()):.3g}",
    )
    on = "tau=steps=6 (never stops)"
    got = as_tensor(
        c.call(student_fn, model, x, y, 0.3, 0.05, 6, 6, on=on), c.exercise, "x_adv", on
    )
    plain = pgd_climb(model, x, y, 0.3, 0.05, 6, random_start=False).double()
    c.expect(close(got, plain), "τ ≥ K gives plain PGD-K", on, "PGD-6 from x", show(got))
    c.done()


def check_cat_update_eps(student_update: Callable) -> None:
    r"""Check ``cat_update_eps(model, x_adv, y, eps_i, eta, eps_max) -> (B,)``: budgets of the
    samples the attack did not fool grow by :math:`\eta` up to :math:`\varepsilon_{max}`; the
    others stay (the paper's direction, see the erratum in :mod:`course_lib.defenses.cat`)."""
    c = Checker("cat_update_eps")
    eta, eps_max = 0.05, 0.3
    for seed in (0, 1):
        model, (x, y) = tiny_model((1, 4, 4), (16,), 3, seed), _inputs(seed, batch=64)
        cat = CustomizedAT(y, eps_max, eta, c=0.0, steps=3)
        gen = torch.Generator().manual_seed(seed)
        cat.eps = torch.randint(0, 7, (64,), generator=gen).float() * eta  # 0 ... eps_max
        eps_i, idx = cat.eps.clone(), torch.arange(64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            cat(model, x, idx)  # the reference's update, stored in cat.eps
            torch.manual_seed(seed)
            x_adv = pgd_per_sample_eps(model, x, y, eps_i, 3)  # the same draws as inside
        ref = cat.eps.double()
        on = f"PGD-3 examples of 64 samples (seed {seed}), eps_i in 0..0.3, eta={eta}"
        before = eps_i.clone()
        got = c.call(student_update, model, x_adv, y, eps_i, eta, eps_max, on=on)
        c.expect(
            torch.equal(eps_i, before),
            "eps_i is not modified in place",
            on,
            "eps_i unchanged",
            "eps_i changed",
            "return a new tensor (torch.where)",
        )
        got = as_tensor(got, c.exercise, "a tensor (B,)", on)
        c.expect(got.shape == (64,), "returns (B,)", on, "(64,)", str(tuple(got.shape)))
        resisted = model(x_adv).argmax(1) == y
        e = eps_i.double()
        rule = "eps_i + eta where the attack failed (≤ eps_max), else eps_i"
        c.mistake(got, ref, _cat_mistakes(resisted, e, eta, eps_max), on, rule)
        c.expect(
            bool((got <= eps_max + 1e-6).all()),
            "never exceeds eps_max",
            on,
            f"≤ {eps_max}",
            show(got.max()),
        )
        c.agrees(got, ref, "agrees with course_lib's CustomizedAT", on)
    model = tiny_model((1, 4, 4), (16,), 3, 0)
    torch.nn.init.zeros_(model[-1].weight)
    with torch.no_grad():
        model[-1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))  # always predicts class 0
    x, _ = _inputs(4, batch=6)
    y = torch.tensor([0, 0, 0, 1, 2, 1])
    eps_i = torch.tensor([0.0, 0.1, 0.28, 0.0, 0.1, 0.3])
    on = f"a model that always predicts 0, y={y.tolist()}, eps_i={show(eps_i)}"
    got = as_tensor(
        c.call(student_update, model, x, y, eps_i, eta, eps_max, on=on), c.exercise, "a tensor", on
    )
    expected = torch.tensor([0.05, 0.15, 0.3, 0.0, 0.1, 0.3], dtype=torch.float64)
    resisted = y == 0
    c.mistake(got, expected, _cat_mistakes(resisted, eps_i.double(), eta, eps_max), on, "")
    c.expect(
        close(got, expected),
        "closed form: class-0 samples grow, the others stay",
        on,
        show(expected),
        show(got),
    )
    c.done()


def _cat_mistakes(resisted, e, eta, eps_max) -> dict[str, torch.Tensor]:
    return {
        "budgets grow for the samples the attack *fooled*: that is the official code's "
        "direction, which the course corrects (erratum in course_lib.defenses.cat): grow "
        "while the sample resists.": torch.where(~resisted, (e + eta).clamp(max=eps_max), e),
        "the budgets are not capped at eps_max: use (eps_i + eta).clamp(max=eps_max).": torch.where(
            resisted, e + eta, e
        ),
        "every budget grew; only the samples still classified correctly at x_adv grow.": (
            e + eta
        ).clamp(max=eps_max),
        "fooled samples shrink by eta; the paper only grows the budgets of resisting "
        "samples and leaves the others.": torch.where(
            resisted, (e + eta).clamp(max=eps_max), (e - eta).clamp(min=0)
        ),
    }
