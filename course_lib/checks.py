"""Guardrails for robustness claims, and ``expect`` for the check cells of the notebooks.

:func:`robustness_sanity` runs the standard checks of Carlini et al. (2019, "On Evaluating
Adversarial Robustness") and Athalye et al. (2018, "Obfuscated Gradients Give a False Sense of
Security"). A defense that fails one of them is usually masking gradients, not robust.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .attacks import fgsm, input_gradient, keep_worst_case, pgd
from .train import accuracy, predict, robust_accuracy
from .validate import check_choice, check_count, check_fits, check_labels, check_pixels


def expect(condition: bool, message: str) -> None:
    """Assert ``condition`` in a notebook check cell; print ``✓ message`` when it holds."""
    if not isinstance(message, str) or (
        isinstance(condition, torch.Tensor) and condition.numel() != 1
    ):
        raise ValueError("expect(condition, message): condition must be one bool, message a str")
    if not bool(condition):
        raise AssertionError(f"check failed: {message}")
    print(f"✓ {message}")


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
) -> list[Guardrail]:
    """Run the guardrails on ``(x, y)`` and print a pass/fail table; returns the results.

    1. *gradients informative*: at most 1% of inputs have an all-zero input gradient;
    2. *FGSM never stronger than PGD* at any epsilon (``linf`` only);
    3. *accuracy non-increasing in epsilon* (PGD);
    4. *unbounded attack succeeds*: PGD at the largest meaningful epsilon (1 for ``linf``,
       ``sqrt(d)`` for ``l2``) leaves at most 5% accuracy;
    5. *restarts do not raise accuracy*: one PGD run vs the same run plus two restarts at the
       grid's largest epsilon (:func:`restart_gain`; exact for a deterministic model, a randomised
       defense can break it).

    Comparisons allow a slack of ``max(0.02, 3/n)`` for the randomness of the random starts.
    """
    check_pixels(x)
    check_labels(x, y)
    check_choice(norm, "norm", ("linf", "l2"))
    check_count(steps, "steps", minimum=1)
    check_fits(model, x, y)
    eps_grid = sorted(float(e) for e in eps_grid)
    if not eps_grid or eps_grid[0] < 0:
        raise ValueError("eps_grid must be a non-empty list of numbers >= 0")
    n, slack = x.shape[0], max(0.02, 3 / x.shape[0])

    def pgd_acc(eps: float) -> float:
        return robust_accuracy(
            model, x, y, lambda m, a, b: pgd(m, a, b, eps, steps=steps, norm=norm)
        )

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
        fgsm_accs = [
            robust_accuracy(model, x, y, lambda m, a, b, e=e: fgsm(m, a, b, e)) for e in eps_grid
        ]
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
    big = 1.0 if norm == "linf" else float(x[0].numel()) ** 0.5
    acc_big = pgd_acc(big)
    results.append(
        Guardrail(
            "unbounded attack succeeds",
            acc_big <= 0.05,
            f"PGD accuracy at eps={big:.3g} is {acc_big:.3f} (clean {accuracy(model, x, y):.3f})",
        )
    )
    one, more = restart_gain(model, x, y, eps_grid[-1], norm, steps, restarts=3)
    results.append(
        Guardrail(
            "restarts do not raise accuracy",
            more <= one + slack,
            f"PGD at eps={eps_grid[-1]:.3g}: 1 restart {one:.3f}, 3 restarts {more:.3f}",
        )
    )
    _print_table(results, n)
    return results


def restart_gain(model, x, y, eps, norm="linf", steps=10, restarts=3, batch_size=512):
    """Robust accuracy after one PGD run, and after adding ``restarts - 1`` more climbs to that same
    run with :func:`keep_worst_case`. For a deterministic model the second can never exceed the
    first; a randomised model (whose predictions change between calls) can break this."""
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
    print(f"robustness sanity checks on {n} samples")
    for r in results:
        print(f"  [{'pass' if r.passed else 'FAIL'}] {r.name:<32} {r.detail}")
    failed = [r.name for r in results if not r.passed]
    if failed:
        print(
            "  -> suspicious: " + ", ".join(failed) + ". The reported robustness may be masked "
            "gradients; try an adaptive attack (BPDA, EOT) before believing it."
        )
