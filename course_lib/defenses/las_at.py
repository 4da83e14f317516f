r"""LAS-AT: adversarial training with a learnable attack strategy (Jia, Zhang, Wu, Ma, Wang & Cao,
CVPR 2022).

Madry's AT attacks every sample with one fixed strategy (:math:`\varepsilon`, steps, step size).
LAS-AT lets a second network, the **strategy network** :math:`p_\phi(a \mid x)`, choose one
strategy per sample :math:`a = (a_\varepsilon, a_K, a_\alpha)`, each part drawn from a categorical
head over a short list of values. The two networks play a game:

.. math::  \min_\theta\ \max_\phi\ \mathbb E_{(x, y)}\, \mathbb E_{a \sim p_\phi(\cdot \mid x)}
           \big[\mathcal L\big(f_\theta(\mathrm{PGD}_a(x)), \tilde y\big)\big],

the target :math:`f_\theta` trains on the examples of the sampled strategies, with the label
smoothing of the reference code, :math:`\tilde y = 0.7\,\mathrm{onehot}(y) + 0.3/(K-1)` on the
other classes (:func:`smoothed_cross_entropy`). The sampled strategy is not differentiable, so the
strategy network learns by REINFORCE (Williams, 1992), :math:`\nabla_\phi J = \mathbb E[(R - b)\,
\nabla_\phi \sum_{h} \log p_\phi(a_h \mid x)]`, with the reward of the reference code
(``LAS_AT_train_cifar10.py``, ``Get_reward``), all three terms batch scalars:

.. math::  R = 1 \cdot \mathrm{clip}_{[0,10]}\,\mathrm{CE}(f_\theta(x_a), y)
           \;+\; 4 \cdot \mathrm{acc}(f_{\theta'}, \mathrm{PGD}_{10}^{2\,\text{restarts}}(x))
           \;+\; 2 \cdot \mathrm{acc}(f_{\theta'}, x),

:math:`R_1` (the attack's strength on the current target), :math:`R_2, R_3` (robust and clean
accuracy of a copy :math:`\theta'` of the target after **one** SGD step on the strategy's examples:
does the strategy teach robustness without ruining clean accuracy?).

**Deviations from the reference code** (``jiaxiaojunQAQ/LAS-AT``, ``LAS_PGD_AT``). Its strategy
network is a ResNet-18 with a fourth head for the attack type (only I-FGSM is used); ours is a
two-layer CNN (:class:`StrategyNet`) without that head. Its action lists are
``range(3, 15)``/255 for :math:`\varepsilon`, ``range(3, 14)`` steps and ``range(1, 5)``/255 step
sizes (CIFAR-10); the course passes MNIST lists (``zoo`` ``mnist_las_at``) and scales them with the
recipe's :math:`\varepsilon` ramp (:attr:`LearnableAttackStrategyAT.scale`). The reference updates
the policy every 20 batches by SGD (lr 1e-4, no momentum, gradient norm clipped to 1) without a
baseline (:math:`b = 0`); to learn anything in the quick profile's ~1,300 batches we update more
often and optionally subtract an exponential moving average of past rewards as the baseline
:math:`b` (``baseline_momentum``; ``None`` gives the reference's :math:`b = 0`). The copy's step is
plain SGD at ``copy_lr`` (the reference: the target's current SGD learning rate, weight decay
5e-4). As in the reference, :math:`R_1` is the batch mean, not each sample's own loss: a
per-sample :math:`R_{1,i}` gives the same expected gradient times :math:`B` with far less
variance, but leaves :math:`R_2, R_3` (which depend on the whole batch) diluted by :math:`1/B`; in
a pilot it drove every head to its strongest value within 60 updates. Steps are computed only
for the samples still moving (the reference masks the update of a full-batch gradient: the same
result for networks without batch statistics). The target model is attacked in its current mode
(the reference switches it to eval mode; the same for the course's CNN, which has no BatchNorm or
dropout).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import input_gradient, pgd
from ..validate import check_count, check_nonnegative, check_positive, check_probability

HEADS = ("eps", "steps", "alpha")  # the parts of a strategy, one categorical head each


def check_choices(choices: Mapping[str, Sequence[float]]) -> None:
    """``choices`` maps exactly ``eps``, ``steps`` and ``alpha`` to non-empty lists: radii and
    step sizes > 0, step counts integers >= 1."""
    if not isinstance(choices, Mapping) or set(choices) != set(HEADS):
        got = sorted(choices) if isinstance(choices, Mapping) else type(choices).__name__
        raise ValueError(f"choices must map exactly {list(HEADS)} to lists of values, got {got}")
    for name, values in choices.items():
        if len(values) == 0:
            raise ValueError(f"choices[{name!r}] must list at least one value, got an empty list")
        for v in values:
            if name == "steps":
                check_count(v, "choices['steps'] entry", minimum=1)
            else:
                check_positive(v, f"choices[{name!r}] entry")


class StrategyNet(nn.Module):
    """The strategy network: a two-layer CNN over the image and one linear head per part of the
    strategy, ``forward(x) -> {head: logits (B, len(choices[head]))}``."""

    def __init__(
        self,
        choices: Mapping[str, Sequence[float]],
        in_channels: int = 1,
        image_size: int = 28,
        width: int = 8,
    ) -> None:
        super().__init__()
        check_choices(choices)
        check_count(in_channels, "in_channels", minimum=1)
        check_count(image_size, "image_size", minimum=8)
        check_count(width, "width", minimum=1)
        side = (image_size + 3) // 4
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, stride=2, padding=2),  # (B, w, H/2, W/2)
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 5, stride=2, padding=2),  # (B, 2w, H/4, W/4)
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * side * side, 32),
            nn.ReLU(),
        )
        self.heads = nn.ModuleDict({h: nn.Linear(32, len(choices[h])) for h in HEADS})
        for values, name in ((choices["eps"], "eps"), (choices["alpha"], "alpha")):
            self.register_buffer(f"{name}_values", torch.tensor([float(v) for v in values]))
        self.register_buffer("steps_values", torch.tensor([int(v) for v in choices["steps"]]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.body(x - 0.5)  # (B, 32)
        return {h: head(z) for h, head in self.heads.items()}


def sample_strategy(
    net: StrategyNet, x: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    r"""Draw one strategy per sample from :math:`p_\phi(\cdot \mid x)`: the chosen indices
    ``{head: (B,)}`` and :math:`\log p_\phi(a \mid x)` summed over the heads, ``(B,)`` (with a
    gradient to :math:`\phi`). The values are ``net.<head>_values[index]``."""
    logits = net(x)
    dists = {h: torch.distributions.Categorical(logits=logits[h]) for h in HEADS}
    actions = {h: d.sample() for h, d in dists.items()}  # (B,) each
    log_prob = sum(dists[h].log_prob(actions[h]) for h in HEADS)  # (B,)
    return actions, log_prob


def reinforce_loss(log_prob: torch.Tensor, advantage: torch.Tensor | float) -> torch.Tensor:
    r"""REINFORCE's surrogate :math:`-\frac1B\sum_i (R_i - b)\log p_\phi(a_i \mid x_i)`: its
    gradient step raises the log-probability of the sampled actions when the advantage
    :math:`R - b` is positive and lowers it when negative. ``advantage``: a scalar or ``(B,)``."""
    advantage = torch.as_tensor(advantage, dtype=log_prob.dtype, device=log_prob.device)
    return -(advantage.detach() * log_prob).mean()


def pgd_strategy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_i: torch.Tensor,
    steps_i: torch.Tensor,
    alpha_i: torch.Tensor,
    init_eps: float,
) -> torch.Tensor:
    r""":math:`\ell_\infty` PGD with a strategy per sample (the reference's
    ``Attack_policy_batch``): start at :math:`x + U(-\varepsilon_0, \varepsilon_0)` for one
    :math:`\varepsilon_0` = ``init_eps`` whatever the sample's radius, then sample :math:`i` takes
    ``steps_i[i]`` steps of size ``alpha_i[i]``, each projected onto :math:`B_\infty(x_i,
    \varepsilon_i)` and :math:`[0, 1]`. ``eps_i``, ``steps_i``, ``alpha_i``: ``(B,)``."""
    check_nonnegative(init_eps, "init_eps")
    for t, name in ((eps_i, "eps_i"), (steps_i, "steps_i"), (alpha_i, "alpha_i")):
        if t.shape != x.shape[:1]:
            raise ValueError(f"{name} must have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}")
    if (steps_i < 1).any() or (eps_i < 0).any() or (alpha_i <= 0).any():
        raise ValueError("steps_i must be >= 1, eps_i >= 0 and alpha_i > 0 for every sample")
    shape = (-1, *([1] * (x.ndim - 1)))
    eps, alpha = eps_i.view(shape), alpha_i.view(shape)  # (B, 1, ..., 1)
    x_adv = (x + (2 * torch.rand_like(x) - 1) * init_eps).clamp(0, 1)
    for k in range(int(steps_i.max())):
        idx = (steps_i > k).nonzero().squeeze(1)  # the samples still moving
        grad = input_gradient.__wrapped__(model, x_adv[idx], y[idx])  # (A, ...), args checked
        step = x_adv[idx] + alpha[idx] * grad.sign()
        x_adv[idx] = torch.min(torch.max(step, x[idx] - eps[idx]), x[idx] + eps[idx]).clamp(0, 1)
    return x_adv.detach()


def smoothed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, factor: float) -> torch.Tensor:
    r"""Cross-entropy with the reference's label smoothing: ``factor`` on the true class and
    :math:`(1 - \text{factor})/(K - 1)` on each other class (``factor`` = 1: plain CE)."""
    k = logits.shape[1]
    soft = torch.full_like(logits, (1 - factor) / (k - 1))  # (B, K)
    soft.scatter_(1, y[:, None], factor)
    return -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()


class LearnableAttackStrategyAT:
    r"""LAS-AT's training loss ``loss_fn(model, x, y)`` for :func:`course_lib.train.train_epoch`,
    holding the strategy network, its optimizer and what it chose.

    Per call: every ``policy_every``-th batch first updates the strategy network by REINFORCE
    (:meth:`update_policy`); then a strategy is drawn per sample, :func:`pgd_strategy` builds the
    examples, and the loss is :func:`smoothed_cross_entropy` on them. Radii, step sizes and the
    initial noise are multiplied by :attr:`scale` (an :math:`\varepsilon` ramp set by the caller).
    :attr:`counts` accumulates how often each value was chosen, :attr:`rewards` the rewards
    :math:`(R_1, R_2, R_3, R)` of each policy update.
    """

    def __init__(
        self,
        choices: Mapping[str, Sequence[float]],
        eps: float,
        *,
        policy_every: int = 20,
        policy_lr: float = 1e-4,
        weights: tuple[float, float, float] = (1.0, 4.0, 2.0),
        factor: float = 0.7,
        copy_lr: float = 0.1,
        baseline_momentum: float | None = None,
        in_channels: int = 1,
        image_size: int = 28,
    ) -> None:
        check_choices(choices)
        check_positive(eps, "eps")
        check_count(policy_every, "policy_every", minimum=1)
        check_positive(policy_lr, "policy_lr")
        check_positive(copy_lr, "copy_lr")
        if len(weights) != 3:
            raise ValueError(f"weights must be three numbers (R1, R2, R3), got {weights!r}")
        for w in weights:
            check_nonnegative(w, "weights entry")
        if not 0 < factor <= 1:
            raise ValueError(f"factor must be in (0, 1] (the true class's share), got {factor!r}")
        if baseline_momentum is not None:
            check_probability(baseline_momentum, "baseline_momentum")
        self.net = StrategyNet(choices, in_channels, image_size)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=policy_lr)
        self.eps, self.policy_every, self.weights, self.factor = eps, policy_every, weights, factor
        self.copy_lr, self.baseline_momentum = copy_lr, baseline_momentum
        self.scale, self.batches, self.baseline = 1.0, 0, None
        self.counts = {h: torch.zeros(len(choices[h])) for h in HEADS}
        self.rewards: list[tuple[float, float, float, float]] = []

    def _attack(self, model, x, y, actions) -> torch.Tensor:
        net = self.net
        return pgd_strategy(
            model,
            x,
            y,
            net.eps_values[actions["eps"]] * self.scale,
            net.steps_values[actions["steps"]],
            net.alpha_values[actions["alpha"]] * self.scale,
            self.eps * self.scale,
        )

    def update_policy(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        """One REINFORCE step of the strategy network on this batch; returns the reward R."""
        actions, log_prob = sample_strategy(self.net, x)
        x_adv = self._attack(model, x, y, actions)
        with torch.no_grad():
            r1 = F.cross_entropy(model(x_adv), y).clamp(0, 10).item()
        target = copy.deepcopy(model)  # theta': the target after one step on these examples
        step = torch.optim.SGD(target.parameters(), lr=self.copy_lr)
        step.zero_grad()
        smoothed_cross_entropy(target(x_adv), y, self.factor).backward()
        step.step()
        x_pgd = pgd(target, x, y, self.eps * self.scale, steps=10, restarts=2)
        with torch.no_grad():
            r2 = (target(x_pgd).argmax(1) == y).float().mean().item()
            r3 = (target(x).argmax(1) == y).float().mean().item()
        w1, w2, w3 = self.weights
        reward = w1 * r1 + w2 * r2 + w3 * r3
        if self.baseline_momentum is None:
            advantage = reward
        else:
            self.baseline = reward if self.baseline is None else self.baseline
            advantage = reward - self.baseline
            m = self.baseline_momentum
            self.baseline = m * self.baseline + (1 - m) * reward
        self.optimizer.zero_grad()
        reinforce_loss(log_prob, advantage).backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.optimizer.step()
        self.rewards.append((w1 * r1, w2 * r2, w3 * r3, reward))
        return reward

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.net.to(x.device)
        self.batches += 1
        if self.batches % self.policy_every == 0:
            self.update_policy(model, x, y)
        with torch.no_grad():
            actions, _ = sample_strategy(self.net, x)
        for h in HEADS:
            self.counts[h] += torch.bincount(actions[h].cpu(), minlength=len(self.counts[h]))
        x_adv = self._attack(model, x, y, actions)
        return smoothed_cross_entropy(model(x_adv), y, self.factor)
