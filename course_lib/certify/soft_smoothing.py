r"""The *soft* smoothed classifier and what is built on it: the training losses of Gaussian
augmentation (Cohen et al. 2019) and MACER (Zhai et al. 2020), and an attack on g (Salman et al.
2019, SmoothAdv).

The hard smoothed classifier counts votes and has no gradient. Its soft version averages the
base model's probabilities over noise, which is differentiable:

.. math::  \bar p(x) = \mathbb E_{\varepsilon}\, \mathrm{softmax}\big(f(x+\varepsilon)\big)
           \approx \frac1k \sum_{j=1}^k \mathrm{softmax}\big(f(x + \varepsilon_j)\big).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..lipschitz.attacks import pgd_l2_per_sample
from ..train import LossFn
from ..validate import (
    check_batch,
    check_channels,
    check_count,
    check_labels,
    check_nonnegative,
    check_positive,
)

_normal = torch.distributions.Normal(0.0, 1.0)


def noisy_logits(model: nn.Module, x: torch.Tensor, sigma: float, k: int) -> torch.Tensor:
    r"""Logits of ``k`` Gaussian copies of each input, ``(B, k, K)``, in one forward pass:
    :math:`f(x_i + \varepsilon_{ij})`, :math:`\varepsilon_{ij} \sim \mathcal N(0, \sigma^2 I)`."""
    check_batch(x, "x")
    check_channels(model, x)
    check_nonnegative(sigma, "sigma")
    check_count(k, "k", minimum=1)
    x_rep = x.repeat_interleave(k, dim=0)  # (B*k, ...): copies of one input are adjacent
    logits = model(x_rep + sigma * torch.randn_like(x_rep))  # (B*k, K)
    return logits.view(x.shape[0], k, -1)


class SoftSmoothed(nn.Module):
    r"""``log p̄(x)`` of the soft smoothed classifier, estimated with ``k`` fresh noise draws per
    call. Attacking it with PGD (an expectation-over-transformation gradient) is the adaptive
    attack on randomized smoothing of Salman et al. (2019)."""

    def __init__(self, base_model: nn.Module, sigma: float, k: int = 64):
        super().__init__()
        check_positive(sigma, "sigma")
        check_count(k, "k", minimum=1)
        self.base_model, self.sigma, self.k = base_model, sigma, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p_bar = noisy_logits(self.base_model, x, self.sigma, self.k).softmax(2).mean(1)  # (B, K)
        return torch.log(p_bar + 1e-10)


def smooth_adv(
    base_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    eps: float | torch.Tensor,
    steps: int = 20,
    k: int = 64,
) -> torch.Tensor:
    r"""SmoothAdv (Salman et al. 2019): ℓ2 PGD on the soft smoothed classifier, the adaptive
    attack on g. Each step ascends :math:`-\log \bar p_y(x')` with a Monte-Carlo gradient over
    ``k`` fresh noise draws (expectation over transformation) and projects onto the ball.

    ``eps`` is one budget or one per sample ``(B,)``, so that each point can be attacked right
    inside its own certified radius: this is chapter 1's
    :func:`~course_lib.lipschitz.attacks.pgd_l2_per_sample` run on :class:`SoftSmoothed`.
    """
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    eps = eps.expand(x.shape[0]) if eps.ndim == 0 else eps  # one budget for all samples
    return pgd_l2_per_sample(SoftSmoothed(base_model, sigma, k), x, y, eps, steps=steps)


def vote_under_attack(
    smooth,
    x: torch.Tensor,
    classes: torch.Tensor,
    radii: torch.Tensor,
    scale: float = 0.999,
    n_check: int = 1_000,
    batch_size: int = 1_000,
    k: int = 64,
) -> torch.Tensor:
    """Soundness check of CERTIFY: attack the smoothed classifier ``smooth`` (Gaussian) with
    :func:`smooth_adv` at ``scale`` times each certified radius, then estimate g's vote for the
    certified class there from ``n_check`` fresh samples, ``(B,)``. Inside the radius
    (``scale < 1``) it may not fall below 1/2 by more than the Monte-Carlo error."""
    check_labels(x, classes, "classes", num_classes=smooth.num_classes)
    x_adv = smooth_adv(smooth.base_model, x, classes, smooth.sigma, scale * radii, k=k)
    votes = smooth.counts(x_adv, n_check, batch_size)  # (B, K)
    return votes.gather(1, classes[:, None])[:, 0].float() / n_check


def gaussian_augmentation_loss(sigma: float) -> LossFn:
    r"""Cohen et al. (2019) training: cross-entropy on :math:`x + \varepsilon`, fresh
    :math:`\varepsilon \sim \mathcal N(0, \sigma^2 I)` per batch, at the σ used to certify."""
    check_positive(sigma, "sigma")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_batch(x, "x")
        check_channels(model, x)
        logits = model(x + sigma * torch.randn_like(x))  # (B, K)
        check_labels(x, y, num_classes=logits.shape[1])
        return F.cross_entropy(logits, y)

    return loss_fn


def noise_augmentation_loss(smooth) -> LossFn:
    r"""Train with the noise you certify with: cross-entropy on :math:`x + \varepsilon`,
    :math:`\varepsilon` drawn by ``smooth.sample_noise`` (any :class:`Smooth` subclass, e.g.
    uniform or Laplace noise; Yang et al. 2020)."""

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_batch(x, "x")
        check_channels(model, x)
        logits = model(x + smooth.sample_noise(x.shape, x.device))  # (B, K)
        check_labels(x, y, num_classes=logits.shape[1])
        return F.cross_entropy(logits, y)

    return loss_fn


def macer_terms(
    logits: torch.Tensor, y: torch.Tensor, sigma: float, beta: float, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""MACER's two loss terms from noisy logits ``(B, k, K)``, both *summed* over the batch.

    * classification: :math:`L_{cls} = -\sum_i \log \bar p_{y_i}(x_i)` with
      :math:`\bar p = \frac1k\sum_j \mathrm{softmax}(z_{ij})` (no β here);
    * robustness: with :math:`\bar p^\beta = \frac1k \sum_j \mathrm{softmax}(\beta z_{ij})`, its top
      two values :math:`p_1 \ge p_2` and :math:`\xi = \Phi^{-1}(p_1) - \Phi^{-1}(p_2)` (twice the
      soft radius over σ), :math:`L_{rob} = \sum_{i \in \mathcal I} \tfrac\sigma2 (\gamma - \xi_i)`
      over :math:`\mathcal I` = points whose top class is :math:`y_i` and with finite
      :math:`\xi_i \le \gamma` (the hinge :math:`\max(0, \gamma - \xi)`).

    Returns ``(L_cls, L_rob, mask)``. Saturated probabilities (:math:`\xi = \infty`) are left out
    of :math:`\mathcal I`; ξ is recomputed on the kept points only, so no NaN reaches the gradient.
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or logits.shape[2] < 2:
        got = getattr(logits, "shape", type(logits).__name__)
        raise ValueError(f"logits must be noisy logits of shape (B, k, K), K >= 2, got {got}")
    check_labels(logits, y, num_classes=logits.shape[2])
    p_bar = logits.softmax(2).mean(1)  # (B, K)
    loss_cls = F.nll_loss(torch.log(p_bar + 1e-10), y, reduction="sum")

    p_beta = (beta * logits).softmax(2).mean(1)  # (B, K)
    top2 = p_beta.topk(2, dim=1)
    p1, p2 = top2.values[:, 0], top2.values[:, 1]  # (B,)
    with torch.no_grad():
        xi = _normal.icdf(p1) - _normal.icdf(p2)
        mask = (top2.indices[:, 0] == y) & torch.isfinite(xi) & (xi <= gamma)  # (B,)
    xi_kept = _normal.icdf(p1[mask]) - _normal.icdf(p2[mask])
    loss_rob = (gamma - xi_kept).sum() * sigma / 2
    return loss_cls, loss_rob, mask


def macer_loss(
    sigma: float, k: int = 16, beta: float = 16.0, gamma: float = 8.0, lam: float = 12.0
) -> LossFn:
    r"""MACER (Zhai et al. 2020): :math:`\frac1B\big(L_{cls} + \lambda L_{rob}\big)` of
    :func:`macer_terms` on ``k`` noisy copies per input. Defaults are the reference's CIFAR-10
    setting (k=16, β=16, γ=8, λ=12); it costs k forward/backward passes per input."""
    check_positive(sigma, "sigma")
    check_count(k, "k", minimum=1)
    check_positive(beta, "beta")
    check_positive(gamma, "gamma")
    check_nonnegative(lam, "lam")

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss_cls, loss_rob, _ = macer_terms(noisy_logits(model, x, sigma, k), y, sigma, beta, gamma)
        return (loss_cls + lam * loss_rob) / x.shape[0]

    return loss_fn
