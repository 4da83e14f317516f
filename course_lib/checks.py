"""Guardrails for robustness claims, intervals for every accuracy, and ``expect`` for check cells.

:func:`robustness_sanity` runs the checks of Carlini et al. (2019, "On Evaluating Adversarial
Robustness", section 5) and Athalye et al. (2018, "Obfuscated Gradients Give a False Sense of
Security"). A defense that fails one of them is usually masking gradients, not robust.
:func:`accuracy_interval` and :func:`with_interval` put a Clopper–Pearson interval on every
accuracy a notebook prints (an accuracy on 100 points is known to about ±0.05 at best).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .attacks import fgsm, input_gradient, keep_worst_case, pgd, square_attack
from .certify.smoothing import clopper_pearson_lower, clopper_pearson_upper
from .train import accuracy, predict, robust_accuracy
from .validate import (
    check_choice,
    check_count,
    check_fits,
    check_labels,
    check_pixels,
    check_probability,
)


def expect(condition: bool, message: str) -> None:
    """Assert ``condition`` in a notebook check cell; print ``✓ message`` when it holds."""
    if not isinstance(message, str) or (
        isinstance(condition, torch.Tensor) and condition.numel() != 1
    ):
        raise ValueError("expect(condition, message): condition must be one bool, message a str")
    if not bool(condition):
        raise AssertionError(f"check failed: {message}")
    print(f"✓ {message}")


def accuracy_interval(acc, n: int, alpha: float = 0.05):
    r"""Two-sided :math:`(1-\alpha)` Clopper–Pearson interval of an accuracy ``acc`` measured on
    ``n`` points (each side at level :math:`\alpha/2`); ``acc * n`` is rounded to a count.
    ``acc`` is one number (returns two floats) or an array of them (returns two arrays)."""
    check_count(n, "n", minimum=1)
    check_probability(alpha, "alpha")
    acc_np = np.asarray(acc, dtype=np.float64)
    if not ((acc_np >= 0) & (acc_np <= 1)).all():
        raise ValueError(f"acc must be in [0, 1], got {acc!r}")
    k = torch.as_tensor(np.rint(acc_np * n)).reshape(-1)
    low = clopper_pearson_lower(k, n, alpha / 2).numpy().reshape(acc_np.shape)
    high = clopper_pearson_upper(k, n, alpha / 2).numpy().reshape(acc_np.shape)
    return (float(low), float(high)) if acc_np.ndim == 0 else (low, high)


def with_interval(acc: float, n: int, alpha: float = 0.05, digits: int = 2) -> str:
    """``acc`` with its 95% Clopper–Pearson interval, e.g. ``"0.93 [0.86, 0.97]"``: the form in
    which every accuracy (clean, robust, certified) is printed in tables and legends."""
    low, high = accuracy_interval(acc, n, alpha)
    return f"{acc:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


@dataclass(frozen=True)
class Guardrail:
    name: str
    passed: bool
    detail: str


def robustness_sanity(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_grid: Sequence[float],
    norm: str = "linf",
    steps: int = 20,
    *,
    source_model: nn.Module | None = None,
    long_steps: int = 100,
    eps_check: float | None = None,
    queries: int = 300,
) -> list[Guardrail]:
    """Run the guardrails on ``(x, y)`` and print a pass/fail table; returns the results.

    1. *gradients informative*: at most 1% of inputs have an all-zero input gradient;
    2. *FGSM never stronger than PGD* at any epsilon (``linf`` only);
    3. *accuracy non-increasing in eps* (PGD);
    4. *unbounded attack succeeds*: PGD at the largest meaningful epsilon (1 for ``linf``,
       ``sqrt(d)`` for ``l2``) leaves at most 5% accuracy;

    and at one budget ``eps_check`` (default: the grid's largest epsilon at which PGD still leaves
    half the clean accuracy, where a failing attack shows most):

    5. *restarts lower accuracy little*: PGD, then the same run plus two random restarts
       (:func:`restart_gain`); a drop larger than the slack means one run had not converged;
    6. *more steps lower accuracy little*: PGD with ``steps`` against ``long_steps`` steps;
    7. *gradient-free search no stronger*: :func:`~course_lib.attacks.square_attack` with
       ``queries`` queries (never looks at a gradient) may not beat PGD;
    8. *transfer attack no stronger* (only with ``source_model``, e.g. the undefended model):
       PGD computed on ``source_model`` and evaluated on ``model`` may not beat PGD on ``model``.

    Checks 5–8 are Carlini et al.'s: a *weaker* attack (fewer steps, one start, no gradient, a
    surrogate model) beating the white-box one means the white-box attack is failing, and its
    number is not an upper bound worth reporting. Checks 2–3 allow a slack of ``max(0.02, 3/n)``
    for the randomness of the random starts, checks 5–8 a tolerance of ``max(0.1, 5/n)``: a
    converged attack moves by a few points at most, a failing one by tens of points.
    """
    check_pixels(x)
    check_labels(x, y)
    check_choice(norm, "norm", ("linf", "l2"))
    check_count(steps, "steps", minimum=1)
    check_count(long_steps, "long_steps", minimum=1)
    check_count(queries, "queries", minimum=1)
    check_fits(model, x, y)
    eps_grid = sorted(float(e) for e in eps_grid)
    if not eps_grid or eps_grid[0] < 0:
        raise ValueError("eps_grid must be a non-empty list of numbers >= 0")
    n, slack, tol = x.shape[0], max(0.02, 3 / x.shape[0]), max(0.1, 5 / x.shape[0])

    def acc_under(attack) -> float:
        return robust_accuracy(model, x, y, attack)

    def pgd_acc(eps: float, k: int = steps) -> float:
        return acc_under(lambda m, a, b: pgd(m, a, b, eps, steps=k, norm=norm))

    results = []
    grads = [
        input_gradient(model, xb, yb) for xb, yb in zip(x.split(512), y.split(512), strict=True)
    ]
    zero = (torch.cat(grads).flatten(1).abs().amax(1) == 0).float().mean().item()
    results.append(
        Guardrail(
            "gradients informative",
            zero <= 0.01,
            f"{zero:.1%} of inputs have an all-zero input gradient",
        )
    )
    pgd_accs = [pgd_acc(e) for e in eps_grid]
    if norm == "linf":
        fgsm_accs = [acc_under(lambda m, a, b, e=e: fgsm(m, a, b, e)) for e in eps_grid]
        worst = max(p - f for p, f in zip(pgd_accs, fgsm_accs, strict=True))
        results.append(
            Guardrail(
                "FGSM never stronger than PGD",
                worst <= slack,
                f"max(PGD acc - FGSM acc) over eps = {worst:+.3f}",
            )
        )
    rises = max([b - a for a, b in zip(pgd_accs[:-1], pgd_accs[1:], strict=True)] or [0.0])
    results.append(
        Guardrail(
            "accuracy non-increasing in eps",
            rises <= slack,
            f"largest rise of PGD accuracy between grid points = {rises:+.3f}",
        )
    )
    clean = accuracy(model, x, y)
    big = 1.0 if norm == "linf" else float(x[0].numel()) ** 0.5
    acc_big = pgd_acc(big)
    results.append(
        Guardrail(
            "unbounded attack succeeds",
            acc_big <= 0.05,
            f"PGD accuracy at eps={big:.3g} is {acc_big:.3f} (clean {clean:.3f})",
        )
    )

    if eps_check is None:  # the largest budget where PGD still leaves half the clean accuracy
        pairs = [(e, a) for e, a in zip(eps_grid, pgd_accs, strict=True) if e > 0] or [(big, 0)]
        eps_check, base = ([p for p in pairs if p[1] >= clean / 2] or pairs[:1])[-1]
    else:
        base = pgd_acc(eps_check)
    at = f"eps={eps_check:.3g}"
    one, more = restart_gain(model, x, y, eps_check, norm, steps, restarts=3)
    results.append(
        Guardrail(
            "restarts lower accuracy little",
            one - more <= tol,
            f"PGD-{steps} at {at}: 1 start {one:.3f}, 3 starts {more:.3f}",
        )
    )
    long = pgd_acc(eps_check, max(long_steps, steps))
    results.append(
        Guardrail(
            "more steps lower accuracy little",
            base - long <= tol,
            f"at {at}: PGD-{steps} {base:.3f}, PGD-{max(long_steps, steps)} {long:.3f}",
        )
    )
    free = acc_under(lambda m, a, b: square_attack(m, a, b, eps_check, queries=queries, norm=norm))
    results.append(
        Guardrail(
            "gradient-free search no stronger",
            free >= base - tol,
            f"at {at}: Square Attack (gradient-free) {free:.3f}, PGD-{steps} {base:.3f}",
        )
    )
    if source_model is not None:
        fooled = 0
        for xb, yb in zip(x.split(512), y.split(512), strict=True):
            x_adv = pgd(source_model, xb, yb, eps_check, steps=steps, norm=norm)
            fooled += (predict(model, x_adv) != yb).sum().item()
        transfer = 1 - fooled / n
        results.append(
            Guardrail(
                "transfer attack no stronger",
                transfer >= base - tol,
                f"at {at}: PGD-{steps} on the source model {transfer:.3f}, on the model {base:.3f}",
            )
        )
    _print_table(results, n)
    return results


def restart_gain(model, x, y, eps, norm="linf", steps=10, restarts=3, batch_size=512):
    """Robust accuracy after one PGD run, and after adding ``restarts - 1`` more climbs to that same
    run with :func:`keep_worst_case`. For a deterministic model the second can never exceed the
    first (a unit test checks it): what matters is how much *lower* it is. A large drop means a
    single run had not found the worst case (Carlini et al., 2019)."""
    fooled_one = fooled_more = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        x_one = pgd(model, xb, yb, eps, steps=steps, norm=norm)
        x_more = x_one
        for _ in range(restarts - 1):
            x_more = keep_worst_case(
                model, x_more, pgd(model, xb, yb, eps, steps=steps, norm=norm), yb
            )
        fooled_one += (predict(model, x_one) != yb).sum().item()
        fooled_more += (predict(model, x_more) != yb).sum().item()
    n = x.shape[0]
    return 1 - fooled_one / n, 1 - fooled_more / n


def _print_table(results: list[Guardrail], n: int) -> None:
    print(f"robustness sanity checks on {n} samples (accuracies are upper bounds: attacks)")
    for r in results:
        print(f"  [{'pass' if r.passed else 'FAIL'}] {r.name:<34} {r.detail}")
    failed = [r.name for r in results if not r.passed]
    if failed:
        print(
            "  -> suspicious: " + ", ".join(failed) + ". The reported robustness may be masked "
            "gradients or a failing attack; try an adaptive attack (BPDA, EOT) before believing it."
        )
