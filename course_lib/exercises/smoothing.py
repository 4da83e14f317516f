r"""Checkers for the exercises of chapter 5 (randomized smoothing, Cohen, Rosenfeld & Kolter,
2019): the one-sided Clopper–Pearson lower bound and CERTIFY's radius with abstention.

Both functions work on plain numbers, so the checkers sweep grids that include the edge cases:
:math:`n_A = 0`, :math:`n_A = n`, :math:`n = 1`, and :math:`\underline{p_A}` at, just below and
just above :math:`1/2`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy.stats import beta, norm

from ..certify.smoothing import clopper_pearson_lower
from . import Checker, ExerciseFailed, short_repr, show

_GRID = sorted(  # typical counts first (where mistakes are told apart), the edge cases after
    {
        (n_A, n, alpha)
        for n in (1, 10, 100, 1000)
        for n_A in (0, 1, n // 2, (9 * n) // 10, n - 1, n)
        for alpha in (0.001, 0.05)
        if 0 <= n_A <= n
    },
    key=lambda c: (c[0] in (0, c[1]) or c[1] == 1, c[1], c[0], c[2]),
)


def _number(c: Checker, value, on: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ExerciseFailed(
            f"{c.exercise}: property 'returns a number' fails on {on}: expected a float, got "
            f"{type(value).__name__} {short_repr(value)}."
        ) from None


def check_clopper_pearson_lower(student_lower: Callable) -> None:
    r"""Check ``clopper_pearson_lower(n_A, n, alpha) -> float``: the one-sided
    :math:`(1-\alpha)` bound :math:`\mathrm{Beta}^{-1}(\alpha; n_A, n - n_A + 1)`, 0 at
    :math:`n_A = 0`."""
    c = Checker("clopper_pearson_lower")
    for n_A, n, alpha in _GRID:
        on = f"n_A={n_A}, n={n}, alpha={alpha}"
        got = _number(c, c.call(student_lower, n_A, n, alpha, on=on), on)
        ref = float(clopper_pearson_lower(n_A, n, alpha))
        c.expect(
            not math.isnan(got),
            "returns a number, never NaN",
            on,
            show(ref),
            "nan",
            "Beta(0, ·) is undefined: the bound is 0 when n_A = 0" if n_A == 0 else None,
        )
        c.mistake(got, ref, _cp_mistakes(n_A, n, alpha), on, f"{ref:.6g}")
        c.expect(
            0 <= got <= n_A / n + 1e-12,
            "0 ≤ bound ≤ n_A / n",
            on,
            f"a value in [0, {n_A / n:g}]",
            show(got),
            "a lower confidence bound never exceeds the estimate n_A / n",
        )
        c.expect(
            abs(got - ref) <= 1e-6 + 1e-6 * ref,
            "agrees with the reference",
            on,
            f"{ref:.6g}",
            f"{got:.6g}",
        )
    c.done()


def _cp_mistakes(n_A: int, n: int, alpha: float) -> dict[str, float]:
    def ppf(q, a, b):
        return float(beta.ppf(q, a, b)) if a > 0 and b > 0 else float("nan")

    p_hat = n_A / n
    return {
        "this is the lower end of the *two-sided* interval (α/2 on each side); CERTIFY needs "
        "the one-sided bound at level α: Beta⁻¹(α; n_A, n − n_A + 1).": ppf(
            alpha / 2, n_A, n - n_A + 1
        )
        if n_A > 0
        else 0.0,
        "the Beta parameters are the upper bound's (n_A + 1, n − n_A); the lower bound uses "
        "(n_A, n − n_A + 1).": ppf(alpha, n_A + 1, n - n_A),
        "you took the (1 − α) quantile, which is the *upper* bound; the lower one is the α "
        "quantile.": ppf(1 - alpha, n_A, n - n_A + 1) if n_A > 0 else 0.0,
        "this is the normal approximation p̂ − z·√(p̂(1 − p̂)/n) (Wald), which is not a valid "
        "bound for small n or p̂ near 0 or 1 (at n_A = n it gives 1); use the exact Beta "
        "quantile.": max(0.0, p_hat - norm.ppf(1 - alpha) * math.sqrt(p_hat * (1 - p_hat) / n)),
        "this is the estimate n_A / n itself, not a lower confidence bound.": p_hat,
    }


def check_certify_radius(student_certify: Callable) -> None:
    r"""Check ``certify_radius(c_A, p_A_lower, sigma) -> (prediction, radius)``: ``(c_A,``
    :math:`\sigma\Phi^{-1}(\underline{p_A})` ``)`` when :math:`\underline{p_A} \ge 1/2`, else
    ``(-1, 0.0)`` (abstain)."""
    c = Checker("certify_radius")
    for p, sigma in [
        (p, s) for s in (0.25, 0.5, 1.0) for p in (0.7, 0.99, 0.2, 0.4999, 0.5001, 0.999999)
    ]:
        on = f"c_A=3, p_A_lower={p}, sigma={sigma}"
        out = c.call(student_certify, 3, p, sigma, on=on)
        c.expect(
            isinstance(out, tuple) and len(out) == 2,
            "returns a tuple (prediction, radius)",
            on,
            "a tuple (int, float)",
            f"{type(out).__name__} {short_repr(out)}",
        )
        prediction, radius = int(out[0]), _number(c, out[1], on)
        if p < 0.5:
            c.expect(
                (prediction, radius) == (-1, 0.0),
                "abstains (−1, 0.0) when p_A_lower < 1/2",
                on,
                "(-1, 0.0)",
                show((prediction, radius)),
                "σΦ⁻¹(p) is negative for p < 1/2: no class has a majority we can certify, so "
                "return (-1, 0.0) before computing a radius"
                if radius < 0
                else "return exactly (-1, 0.0) to abstain",
            )
            continue
        ref = sigma * norm.ppf(p)
        c.expect(prediction == 3, "returns c_A when p_A_lower ≥ 1/2", on, "3", str(prediction))
        c.mistake(
            radius,
            ref,
            {
                "σ is missing: the radius of the smoothed classifier is R = σΦ⁻¹(p_A_lower), in "
                "the units of the noise.": norm.ppf(p),
                "you used Φ (norm.cdf) instead of its inverse Φ⁻¹ (norm.ppf).": sigma * norm.cdf(p),
                "σ² instead of σ: the radius scales with the noise's standard deviation.": sigma**2
                * norm.ppf(p),
                "σ/2: the lecture's σ/2·(Φ⁻¹(p_A) − Φ⁻¹(p_B)) with p_B = 1 − p_A is σΦ⁻¹(p_A), "
                "the 1/2 cancels.": sigma / 2 * norm.ppf(p),
            },
            on,
            f"R = σΦ⁻¹(p_A_lower) = {ref:.6g}",
        )
        c.expect(radius >= 0, "the radius is ≥ 0", on, f"{ref:.6g}", f"{radius:.6g}")
        c.expect(
            abs(radius - ref) <= 1e-6 * max(1.0, ref),
            "radius = σΦ⁻¹(p_A_lower)",
            on,
            f"{ref:.6g}",
            f"{radius:.6g}",
        )
    on = "c_A=3, p_A_lower=0.5 exactly, sigma=0.5"
    out = c.call(student_certify, 3, 0.5, 0.5, on=on)
    radius = _number(c, out[1], on)
    c.expect(
        radius == 0 and int(out[0]) in (3, -1),
        "p_A_lower = 1/2 gives radius 0 (a certificate of nothing, or an abstention)",
        on,
        "(3, 0.0) or (-1, 0.0)",
        show((int(out[0]), radius)),
    )
    c.done()
