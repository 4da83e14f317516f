r"""Randomized smoothing (Cohen, Rosenfeld & Kolter, 2019, "Certified Adversarial Robustness via
Randomized Smoothing"): PREDICT and CERTIFY of their Algorithm 1 and 2.

From any base classifier :math:`f` build the *smoothed* classifier

.. math::  g(x) = \arg\max_c \; \mathbb P_{\varepsilon \sim \mathcal N(0, \sigma^2 I)}
           \big(f(x + \varepsilon) = c\big).

If the top class has probability :math:`p_A \ge \underline{p_A} > \tfrac12`, then :math:`g`
returns it on the whole :math:`\ell_2` ball of radius :math:`R = \sigma\,\Phi^{-1}(\underline{p_A})`
(their Theorem 1 with :math:`\overline{p_B} = 1 - \underline{p_A}`). :math:`p_A` is unknown, so
CERTIFY picks the class with ``n0`` noisy samples, estimates its probability with ``n`` *fresh*
samples and lower-bounds it with a one-sided Clopper–Pearson interval: the certificate holds with
probability at least :math:`1 - \alpha` over the sampling. Otherwise it abstains (``-1``).

Noise is added in [0, 1] pixel space (normalisation is the model's first layer), so :math:`\sigma`
and the radii are in pixel units. Deviations from the reference code: votes are counted with
``torch.bincount`` instead of a Python loop, and :meth:`Smooth.certify_batch` shares each forward
pass among several inputs; the statistics are the same.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import beta as beta_dist
from scipy.stats import binom, norm
from torch import nn

from ..validate import (
    check_count,
    check_fits,
    check_pixels,
    check_positive,
    check_probability,
    expected_channels,
)

ABSTAIN = -1


class Smooth:
    """The smoothed classifier :math:`g` of a base classifier with Gaussian noise of std ``sigma``.

    ``base_model`` maps [0, 1] pixels ``(B, ...)`` to logits ``(B, num_classes)``; it is used as
    it is (put it in ``eval()`` mode yourself). Subclasses change only :meth:`sample_noise` and
    :meth:`radius` (see :mod:`course_lib.certify.noise_shapes`).
    """

    norm = "l2"  # the norm of the certified radius

    def __init__(self, base_model: nn.Module, num_classes: int, sigma: float):
        check_count(num_classes, "num_classes", minimum=2)
        check_positive(sigma, "sigma")
        self.base_model, self.num_classes, self.sigma = base_model, num_classes, sigma

    # ----- the noise and its certificate ------------------------------------------------------

    def sample_noise(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        r""":math:`\varepsilon \sim \mathcal N(0, \sigma^2 I)`."""
        return torch.empty(shape, device=device).normal_(0.0, self.sigma)  # one pass, no copy

    def radius(self, p_A_lower: torch.Tensor) -> torch.Tensor:
        r""":math:`R = \sigma\,\Phi^{-1}(\underline{p_A})`, the certified :math:`\ell_2` radius."""
        return self.sigma * torch.as_tensor(norm.ppf(p_A_lower.cpu().double().numpy()))

    # ----- Monte Carlo ------------------------------------------------------------------------

    @torch.no_grad()
    def counts(self, x: torch.Tensor, num: int, batch_size: int) -> torch.Tensor:
        """Votes of ``f`` under noise: ``(B, num_classes)`` counts from ``num`` samples per input.

        The ``B * num`` noisy copies are drawn in chunks of ``batch_size`` rows, so memory stays
        bounded and one forward pass may serve several inputs.
        """
        B, K = x.shape[0], self.num_classes
        total = B * num
        votes = torch.zeros(B * K, dtype=torch.long, device=x.device)
        for start in range(0, total, batch_size):
            owner = torch.arange(start, min(start + batch_size, total), device=x.device) // num
            clean = x.expand(len(owner), *x.shape[1:]) if B == 1 else x[owner]  # (b, ...)
            x_noisy = self.sample_noise(clean.shape, x.device).add_(clean)  # x + eps
            c = self.base_model(x_noisy).argmax(1)  # (b,) base predictions f(x + eps)
            votes += torch.bincount(owner * K + c, minlength=B * K)
        return votes.view(B, K)

    # ----- PREDICT and CERTIFY ----------------------------------------------------------------

    def predict_batch(
        self, x: torch.Tensor, n: int, alpha: float, batch_size: int = 1000
    ) -> torch.Tensor:
        """PREDICT for each input of the batch ``x``: ``(B,)`` classes, ``-1`` for abstain.

        The top two classes of ``n`` votes, ``n_A`` and ``n_B``, go through a two-sided binomial
        test of ``p = 1/2``; if its p-value exceeds ``alpha`` the answer is not significant and
        g abstains. A returned class is wrong with probability at most ``alpha``.
        """
        self._check(x, n=n, alpha=alpha, batch_size=batch_size)
        top2 = self.counts(x, n, batch_size).topk(2, dim=1)  # values/indices (B, 2)
        n_A, n_B = top2.values[:, 0].cpu().numpy(), top2.values[:, 1].cpu().numpy()
        p_value = binomial_test_half(n_A, n_A + n_B)
        c_A = top2.indices[:, 0].clone()
        c_A[torch.as_tensor(p_value > alpha, device=c_A.device)] = ABSTAIN
        return c_A

    def predict(self, x: torch.Tensor, n: int, alpha: float, batch_size: int = 1000) -> int:
        """PREDICT for one input ``x`` without batch dimension: a class, or ``-1``."""
        self._check_single(x)
        return int(self.predict_batch(x.unsqueeze(0), n, alpha, batch_size)[0])

    def certify_batch(
        self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int = 1000
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CERTIFY for each input of ``x``: classes ``(B,)`` (``-1`` = abstain) and radii ``(B,)``.

        1. selection: ``c_A`` = the most frequent class among ``n0`` noisy samples;
        2. estimation: ``n_A`` = votes for ``c_A`` among ``n`` fresh samples;
        3. ``p_A_lower`` = one-sided (1 - alpha) Clopper–Pearson bound of ``n_A / n``;
        4. if ``p_A_lower < 1/2`` abstain (radius 0), else return ``c_A`` and :meth:`radius`.

        Reusing the selection samples in step 2 would bias ``n_A`` upwards and break the
        ``1 - alpha`` guarantee, hence two separate draws.
        """
        self._check(x, n=n, alpha=alpha, batch_size=batch_size)
        check_count(n0, "n0", minimum=1)
        c_A = self.counts(x, n0, batch_size).argmax(1)  # (B,) selection
        n_A = self.counts(x, n, batch_size).gather(1, c_A[:, None])[:, 0]  # (B,) estimation
        return self.certificate(c_A, n_A, n, alpha)

    def certificate(
        self, c_A: torch.Tensor, n_A: torch.Tensor, n: int, alpha: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 3 and 4 of CERTIFY from the selected classes ``c_A (B,)`` and their votes
        ``n_A (B,)`` among ``n`` estimation samples: ``(classes, radii)``."""
        if not isinstance(c_A, torch.Tensor) or c_A.ndim != 1 or c_A.dtype != torch.int64:
            raise ValueError("c_A must be a 1-D int64 tensor of selected classes (B,)")
        if not isinstance(n_A, torch.Tensor) or n_A.shape != c_A.shape:
            raise ValueError(f"n_A must be a tensor of the shape of c_A {tuple(c_A.shape)}")
        if ((c_A < 0) | (c_A >= self.num_classes)).any():
            raise ValueError(f"c_A must hold classes in [0, {self.num_classes - 1}]")
        p_A_lower = clopper_pearson_lower(n_A, n, alpha)  # (B,) float64
        certified = p_A_lower >= 0.5
        radius = torch.where(certified, self.radius(p_A_lower.clamp(min=0.5)), 0.0)
        prediction = torch.where(certified.to(c_A.device), c_A, ABSTAIN)
        return prediction, radius.float().to(c_A.device)

    def certify(
        self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int = 1000
    ) -> tuple[int, float]:
        """CERTIFY for one input ``x`` without batch dimension: ``(class, radius)``, as in the
        paper's code; ``(-1, 0.0)`` means abstain."""
        self._check_single(x)
        prediction, radius = self.certify_batch(x.unsqueeze(0), n0, n, alpha, batch_size)
        return int(prediction[0]), float(radius[0])

    # ----- argument checks --------------------------------------------------------------------

    def _check(self, x, n, alpha, batch_size) -> None:
        check_pixels(x)
        check_count(n, "n", minimum=1)
        check_probability(alpha, "alpha")
        check_count(batch_size, "batch_size", minimum=1)
        check_fits(self.base_model, x)

    def _check_single(self, x) -> None:
        batch = isinstance(x, torch.Tensor) and x.ndim == 4 and expected_channels(self.base_model)
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or batch:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x must be one input without batch dimension, e.g. (C, H, W), got {got}; "
                "for a batch use predict_batch / certify_batch"
            )


# ----- statistics ------------------------------------------------------------------------------


def clopper_pearson_lower(n_A, n: int, alpha: float) -> torch.Tensor:
    r"""One-sided :math:`(1-\alpha)` Clopper–Pearson lower bound of a binomial proportion:
    :math:`\underline{p} = \mathrm{Beta}^{-1}(\alpha;\, n_A,\, n - n_A + 1)`, and 0 when
    :math:`n_A = 0`. Equals ``proportion_confint(n_A, n, alpha=2*alpha, method="beta")[0]``."""
    n_A = _check_votes(n_A, n, alpha, "n_A")
    p = beta_dist.ppf(alpha, np.maximum(n_A, 1), n - n_A + 1)
    return torch.as_tensor(np.where(n_A > 0, p, 0.0))


def clopper_pearson_upper(n_B, n: int, alpha: float) -> torch.Tensor:
    r"""One-sided :math:`(1-\alpha)` upper bound :math:`\mathrm{Beta}^{-1}(1-\alpha;\, n_B + 1,\,
    n - n_B)`, and 1 when :math:`n_B = n`."""
    n_B = _check_votes(n_B, n, alpha, "n_B")
    p = beta_dist.ppf(1 - alpha, n_B + 1, np.maximum(n - n_B, 1))
    return torch.as_tensor(np.where(n_B < n, p, 1.0))


def binomial_test_half(k, m) -> np.ndarray:
    """Two-sided p-value of ``k`` successes in ``m`` trials against ``p = 1/2`` (vectorised
    ``scipy.stats.binomtest(k, m, 0.5).pvalue`` for ``k >= m/2``): ``min(1, 2 P(X >= k))``."""
    k, m = np.asarray(k), np.asarray(m)
    if not (np.isfinite(k).all() and np.isfinite(m).all() and (0 <= k).all() and (k <= m).all()):
        raise ValueError("k and m must be finite counts with 0 <= k <= m")
    return np.minimum(1.0, 2 * binom.sf(k - 1, m, 0.5))


def radius_two_sided(n_A, n_B, n: int, alpha: float, sigma: float) -> torch.Tensor:
    r"""The lecture's form :math:`R = \tfrac\sigma2\big(\Phi^{-1}(\underline{p_A}) -
    \Phi^{-1}(\overline{p_B})\big)`, with *simultaneous* bounds (each at level :math:`\alpha/2`,
    so both hold together with probability :math:`\ge 1-\alpha`) and :math:`\overline{p_B}`
    tightened to :math:`1 - \underline{p_A}` when that is smaller.

    With :math:`\overline{p_B} = 1 - \underline{p_A}` it reduces to
    :math:`\sigma\Phi^{-1}(\underline{p_A})` (since :math:`\Phi^{-1}(1-p) = -\Phi^{-1}(p)`). It
    beats the one-sided certificate only when the runner-up holds much less than
    :math:`1 - p_A`, i.e. the remaining votes are spread over several classes; otherwise the
    halved :math:`\alpha` makes it slightly smaller. ``n_A``, ``n_B`` must come from estimation
    samples that did not choose the classes. A radius :math:`\le 0` means no certificate.
    """
    check_positive(sigma, "sigma")
    check_probability(alpha, "alpha")
    p_A_lower = clopper_pearson_lower(n_A, n, alpha / 2)
    p_B_upper = torch.minimum(clopper_pearson_upper(n_B, n, alpha / 2), 1 - p_A_lower)
    icdf = torch.distributions.Normal(0.0, 1.0).icdf
    return sigma / 2 * (icdf(p_A_lower) - icdf(p_B_upper))


def radius_cap(sigma: float, n: int, alpha: float) -> float:
    r"""The largest radius CERTIFY can ever return with ``n`` samples, reached when all ``n``
    votes agree: :math:`\underline{p_A} = \alpha^{1/n}`, so :math:`R_{\max} =
    \sigma\,\Phi^{-1}(\alpha^{1/n})` (3.81σ for n = 10⁵, α = 10⁻³)."""
    check_positive(sigma, "sigma")
    check_count(n, "n", minimum=1)
    check_probability(alpha, "alpha")
    return float(sigma * norm.ppf(alpha ** (1 / n)))


def _check_votes(votes, n: int, alpha: float, name: str) -> np.ndarray:
    """``votes`` (tensor, array or number) must be counts in [0, n]; returns them as float64."""
    check_count(n, "n", minimum=1)
    check_probability(alpha, "alpha")
    v = np.asarray(torch.as_tensor(votes).cpu(), dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all() or (v < 0).any() or (v > n).any():
        raise ValueError(f"{name} must hold vote counts in [0, n={n}], non-empty")
    return v
