r"""Checkers for the exercises of chapter 0: the FGSM step, the :math:`\ell_2`-ball projection and
the PGD loop (Goodfellow et al., 2015; Madry et al., 2018).

Each checker runs the student's function on a fixed tiny network and fixed inputs, compares it
with :mod:`course_lib.attacks` / :mod:`course_lib.threat`, and names the typical mistake an
answer matches (the sign forgotten, the clip in the wrong place, the projection around the wrong
centre, ...).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attacks import fgsm, input_gradient, pgd_climb
from ..threat import perturbation_norm, project_l2, project_linf
from . import Checker, as_tensor, close, show, tiny_model


def _inputs(seed: int, batch: int = 32, shape=(1, 4, 4), classes: int = 3):
    """Pixels in [0, 1] with some exactly 0 and 1 (where the clip matters), and labels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *shape, generator=gen)
    x.view(batch, -1)[:, 0], x.view(batch, -1)[:, 1] = 0.0, 1.0
    return x, torch.randint(0, classes, (batch,), generator=gen)


def _agrees(c: Checker, got, ref, prop: str, on: str, hint: str | None = None) -> None:
    """``got`` equals ``ref``; otherwise name the sample that differs most."""
    diff = (got - ref).flatten(1).abs().amax(1)  # (B,)
    i = int(diff.argmax())
    got_i = f"{show(got[i])} (max difference {float(diff[i]):.3g})"
    c.expect(close(got, ref), prop, f"{on}, sample {i}", show(ref[i]), got_i, hint)


def _attack_basics(c: Checker, run, model, x, y, eps, on: str) -> torch.Tensor:
    """Shape, untouched inputs and model mode; returns the student's x_adv (float64)."""
    x_before = x.clone()
    got = as_tensor(c.call(run, on=on), c.exercise, "a tensor x_adv", on)
    c.expect(
        got.shape == x.shape, "x_adv has the shape of x", on, str(tuple(x.shape)), str(got.shape)
    )
    c.expect(
        torch.equal(x, x_before),
        "x is not modified in place",
        on,
        "x unchanged",
        "x changed",
        "work on a copy (x.clone(), or x + ...), never x.add_ / x.data",
    )
    c.expect(not model.training, "the model's mode is left alone", on, "eval mode", "train mode")
    return got


def _in_box_and_ball(c: Checker, got, x, eps, norm: str, on: str, hint_ball: str) -> None:
    lo, hi = float(got.min()), float(got.max())
    c.expect(
        lo >= 0 and hi <= 1,
        "x_adv stays in [0, 1]",
        on,
        "pixels in [0, 1]",
        f"values in [{lo:.4g}, {hi:.4g}]",
        "clip x + step to [0, 1] after the step, not before it",
    )
    dist = perturbation_norm(got, x.double(), norm)  # (B,)
    i = int(dist.argmax())
    c.expect(
        float(dist[i]) <= eps + 1e-6,
        f"x_adv stays in the {norm} ball of radius eps",
        f"{on}, sample {i}",
        f"‖x_adv − x‖ ≤ {eps:g}",
        f"{float(dist[i]):.4g}",
        hint_ball,
    )


def check_fgsm(student_fgsm: Callable) -> None:
    r"""Check ``fgsm(model, x, y, eps) -> x_adv``, the step
    :math:`\mathrm{clip}_{[0,1]}(x + \varepsilon\,\mathrm{sign}(\nabla_x \ell(f(x), y)))`."""
    c = Checker("fgsm")
    for seed, eps in [(0, 0.1), (1, 0.3)]:
        model, (x, y) = tiny_model((1, 4, 4), (16,), 3, seed), _inputs(seed)
        on = f"a random 16-pixel batch of 32 (seed {seed}), eps={eps}"
        got = _attack_basics(
            c, lambda m=model, a=x, b=y, e=eps: student_fgsm(m, a, b, e), model, x, y, eps, on
        )
        g = input_gradient(model, x, y).double()  # (B, 1, 4, 4)
        xd = x.double()
        ref = fgsm(model, x, y, eps).double()
        c.mistake(
            got,
            ref,
            {
                "you stepped along the raw gradient, x + ε·∇ℓ; FGSM steps along its sign, "
                "x + ε·sign(∇ℓ) (the corner of the ℓ∞ ball).": (xd + eps * g).clamp(0, 1),
                "you stepped along the raw gradient of the mean loss, x + ε·∇ℓ; FGSM steps "
                "along its sign.": (xd + eps * g / x.shape[0]).clamp(0, 1),
                "you stepped *down* the loss, x − ε·sign(∇ℓ); an attack climbs it.": (
                    xd - eps * g.sign()
                ).clamp(0, 1),
                "x + ε·sign(∇ℓ) is not clipped to [0, 1] after the step (or it was clipped "
                "before the step, which does nothing).": xd + eps * g.sign(),
                "x_adv is x itself: no step was taken.": xd,
            },
            on,
            "x_adv = clip(x + ε·sign(∇ℓ), 0, 1)",
        )
        _in_box_and_ball(c, got, x, eps, "linf", on, "FGSM moves every pixel by at most ε")
        hint = "x_adv = clip(x + ε·sign(∇ₓ CE(f(x), y)), 0, 1) with the true labels y"
        _agrees(c, got, ref, "agrees with the reference fgsm", on, hint)
    model, (x, y) = tiny_model((1, 4, 4), (16,), 3, 0), _inputs(2)
    got = as_tensor(
        c.call(student_fgsm, model, x, y, 0.0, on="eps=0"), c.exercise, "x_adv", "eps=0"
    )
    c.expect(close(got, x), "eps = 0 returns x", "eps=0", "x_adv == x", "a different tensor")
    flat = tiny_model((1, 4, 4), (16,), 3, 0)
    torch.nn.init.zeros_(flat[-1].weight)  # constant logits: the input gradient is exactly 0
    on = "a model with constant logits (zero input gradient)"
    got = as_tensor(c.call(student_fgsm, flat, x, y, 0.1, on=on), c.exercise, "x_adv", on)
    c.expect(
        close(got, x),
        "a zero gradient leaves x unchanged",
        on,
        "x_adv == x (sign(0) = 0)",
        show(got.flatten()) if not torch.isnan(got).any() else "NaN",
        "use g.sign(), which is 0 where g is 0; g / |g| divides by zero",
    )
    c.done()


def check_project_l2(student_project: Callable) -> None:
    r"""Check ``project_l2(x_adv, x, eps)``: :math:`x + \delta\min(1, \varepsilon/\|\delta\|_2)`
    per sample, :math:`\delta = x_{adv} - x`, then clipped to [0, 1]."""
    c = Checker("project_l2")
    gen = torch.Generator().manual_seed(0)
    eps = 1.0
    x = torch.rand(12, 1, 3, 3, generator=gen) * 0.6 + 0.2  # (12, 1, 3, 3)
    direction = torch.randn(12, 1, 3, 3, generator=gen)
    direction /= direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    lengths = torch.tensor([0.3, 0.5, 0.9, 1.0, 1.5, 2.0, 3.0, 0.1, 4.0, 0.7, 2.5, 1.2])
    x_adv = x + direction * lengths.view(-1, 1, 1, 1)  # some inside, some outside the ball
    distances = ", ".join(f"{v:.2g}" for v in lengths.tolist())
    on = f"12 points at distances {distances} from x, eps={eps}"
    got = as_tensor(c.call(student_project, x_adv, x, eps, on=on), c.exercise, "a tensor", on)
    c.expect(got.shape == x.shape, "keeps the shape", on, str(tuple(x.shape)), str(got.shape))
    delta, xd = (x_adv - x).double(), x.double()
    norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)  # (B, 1, 1, 1) per-sample ‖δ‖
    ref = project_l2(x_adv, x, eps).double()
    c.mistake(
        got,
        ref,
        {
            "every δ was rescaled onto the sphere, ε·δ/‖δ‖, even the points already inside "
            "the ball; scale only when ‖δ‖ > ε: δ·min(1, ε/‖δ‖).": (xd + eps * delta / norm).clamp(
                0, 1
            ),
            "one norm was taken over the whole batch; take one per sample, "
            "delta.flatten(1).norm(dim=1).": (
                xd + delta * min(1.0, eps / float(delta.norm()))
            ).clamp(0, 1),
            "x + δ is not clipped to [0, 1] after the scaling.": xd
            + delta * (eps / norm).clamp(max=1),
            "each coordinate of δ was clipped to [−ε, ε]: that is the ℓ∞ projection, "
            "the ℓ2 one scales the whole vector.": project_linf(x_adv, x, eps).double(),
            "δ was divided by ‖δ‖² instead of ‖δ‖.": (
                xd + delta * (eps / norm**2).clamp(max=1)
            ).clamp(0, 1),
        },
        on,
        "x + δ·min(1, ε/‖δ‖₂), clipped to [0, 1]",
    )
    _in_box_and_ball(c, got, x, eps, "l2", on, "scale δ by min(1, ε/‖δ‖₂), per sample")
    in_box = ((x_adv >= 0) & (x_adv <= 1)).flatten(1).all(1)  # (B,)
    inside = (lengths <= eps) & in_box
    moved = (got[inside] - x_adv[inside].double()).flatten(1).abs().amax(1)
    c.expect(
        bool((moved < 1e-6).all()),
        "points inside the ball (and the box) stay where they are",
        f"the {int(inside.sum())} points with ‖δ‖ ≤ ε and pixels in [0, 1]",
        "unchanged",
        f"moved by up to {float(moved.max()):.3g}",
        "the projection of a point of the ball is the point itself",
    )
    _agrees(c, got, ref, "agrees with the reference project_l2", on)
    on = "x_adv == x (δ = 0)"
    got = as_tensor(c.call(student_project, x.clone(), x, eps, on=on), c.exercise, "a tensor", on)
    c.expect(
        close(got, x),
        "δ = 0 returns x",
        on,
        "x",
        "NaN" if torch.isnan(got).any() else show(got),
        "guard the division by ‖δ‖ (e.g. ‖δ‖ + 1e-12)",
    )
    c.done()


def check_pgd(student_pgd: Callable) -> None:
    r"""Check ``pgd_linf(model, x, y, eps, alpha, steps)`` started at ``x``:
    :math:`x^{t+1} = \Pi_{B_\infty(x, \varepsilon) \cap [0,1]}(x^t + \alpha\,\mathrm{sign}
    (\nabla \ell(f(x^t), y)))`."""
    c = Checker("pgd_linf")
    for seed, eps, alpha, steps in [(0, 0.1, 0.025, 10), (1, 0.2, 0.05, 7)]:
        model, (x, y) = tiny_model((1, 4, 4), (16,), 3, seed), _inputs(seed)
        on = f"a random batch (seed {seed}), eps={eps}, alpha={alpha}, steps={steps}"

        def run(m=model, a=x, b=y, e=eps, al=alpha, s=steps):
            return student_pgd(m, a, b, e, al, s)

        got = _attack_basics(c, run, model, x, y, eps, on)
        ref = pgd_climb(model, x, y, eps, alpha, steps, "linf", random_start=False).double()
        mistakes = _pgd_mistakes(model, x, y, eps, alpha, steps)
        c.mistake(got, ref, mistakes, on, "the PGD iterate")
        hint = "after every step project onto the ball around the *clean* x, not the iterate"
        _in_box_and_ball(c, got, x, eps, "linf", on, hint)
        _agrees(c, got, ref, "agrees with the reference PGD (no random start)", on)
    model, (x, y) = tiny_model((1, 4, 4), (16,), 3, 0), _inputs(2)
    for eps, steps, prop in [(0.0, 5, "eps = 0 returns x"), (0.1, 0, "steps = 0 returns x")]:
        on = f"eps={eps}, steps={steps}"
        got = c.call(student_pgd, model, x, y, eps, 0.025, steps, on=on)
        got = as_tensor(got, c.exercise, "x_adv", on)
        c.expect(
            close(got, x), prop, on, "x_adv == x", f"max change {float((got - x).abs().max()):.3g}"
        )
    c.done()


def _pgd_mistakes(model, x, y, eps, alpha, steps) -> dict[str, torch.Tensor]:
    def loop(step_at, project_first=False, sign=1, n=steps):
        x_t = x.clone()
        for _ in range(n):
            g = input_gradient(model, step_at(x_t), y)
            if project_first:
                x_t = project_linf(x_t, x, eps) + sign * alpha * g.sign()
            else:
                x_t = project_linf(x_t + sign * alpha * g.sign(), x, eps)
        return x_t.double()

    unprojected = x.clone()
    for _ in range(steps):
        g = input_gradient(model, unprojected, y)
        unprojected = (unprojected + alpha * g.sign()).clamp(0, 1)
    return {
        "x_adv is x itself: no step was taken.": x.double(),
        "the iterate is never projected back onto the ε-ball around the clean x (only clipped "
        "to [0, 1], or projected around the current iterate): project_linf(x_t + step, x, "
        "eps).": unprojected.double(),
        "every step reuses the gradient at the clean x; recompute ∇ℓ at the current iterate "
        "x_t inside the loop.": loop(lambda x_t: x),
        "the step descends the loss (x_t − α·sign(∇ℓ)); an untargeted attack climbs it.": loop(
            lambda x_t: x_t, sign=-1
        ),
        "you projected before the step, so the last step leaves the ball; step, then "
        "project.": loop(lambda x_t: x_t, project_first=True),
        f"you took {steps - 1} steps instead of {steps}.": loop(lambda x_t: x_t, n=steps - 1),
        f"you took {steps + 1} steps instead of {steps}.": loop(lambda x_t: x_t, n=steps + 1),
    }
