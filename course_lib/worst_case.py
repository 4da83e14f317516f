r"""The per-sample worst case over a list of attacks, as AutoAttack reports robust accuracy.

Attacks run one after the other, each on the samples that every earlier attack left correctly
classified, so a sample counts as robust only if no attack fooled it:

.. math::  \mathrm{acc}_{\text{worst}}(\varepsilon) = \frac1N \sum_i
           \mathbb 1\big[f(x_i) = y_i \ \wedge\ \forall a:\ f(a(x_i)) = y_i\big],

an upper bound on the true robust accuracy at :math:`\varepsilon`. For deterministic attacks it is
never above the best single attack's; attacks with random starts draw different starts when they
run on the subset left by earlier attacks, so that holds only up to their randomness.
:func:`standard_attacks` is AutoAttack's gradient pair, APGD-CE then APGD-T
(:mod:`course_lib.apgd`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import nn

from .apgd import apgd, apgd_targeted
from .train import predict
from .validate import check_count, check_labels, check_nonnegative, check_pixels


class WorstCase(NamedTuple):
    """Per-sample worst case over attacks: the accuracy, which samples survived every attack,
    and the accuracy after each attack in order (cumulative)."""

    accuracy: float
    robust: torch.Tensor
    after: dict[str, float]


def robust_accuracy_worst_case(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    attacks: Mapping[str, Callable[..., torch.Tensor]],
    batch_size: int = 500,
) -> WorstCase:
    r"""Robust accuracy under the per-sample worst case of ``attacks`` (name ->
    ``attack(model, x, y, eps) -> x_adv``), run in order on the samples that every earlier attack
    left correctly classified (as AutoAttack does). A sample counts as robust only if it is
    classified correctly and no attack fooled it: the result is an upper bound on the robust
    accuracy at ``eps``. For deterministic attacks it is never above the best single attack's;
    randomised attacks (random starts) run on a subset draw other starts than when run alone, so
    for them that holds only up to their randomness."""
    check_pixels(x)
    check_labels(x, y)
    check_nonnegative(eps, "eps")
    check_count(batch_size, "batch_size", minimum=1)
    if not attacks:
        raise ValueError("attacks must name at least one attack, got an empty mapping")
    robust = predict(model, x) == y  # (N,)
    after = {}
    for name, attack in attacks.items():
        idx = robust.nonzero().squeeze(1)
        for chunk in idx.split(batch_size) if idx.numel() else ():
            x_adv = attack(model, x[chunk], y[chunk], eps)
            robust[chunk] = predict(model, x_adv) == y[chunk]
        after[name] = robust.float().mean().item()
    return WorstCase(robust.float().mean().item(), robust, after)


def standard_attacks(
    steps: int = 100, norm: str = "linf", n_target_classes: int = 9
) -> dict[str, Callable[..., torch.Tensor]]:
    """AutoAttack's two gradient attacks, APGD-CE then APGD-T (targeted DLR), with ``steps``
    iterations each: the pair every robust accuracy of chapters 3 and 4 is reported with."""
    return {
        f"APGD-CE-{steps}": lambda m, x, y, e: apgd(m, x, y, e, steps=steps, norm=norm),
        f"APGD-T-{steps}x{n_target_classes}": lambda m, x, y, e: apgd_targeted(
            m, x, y, e, steps=steps, norm=norm, n_target_classes=n_target_classes
        ),
    }
