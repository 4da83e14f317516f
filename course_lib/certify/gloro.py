r"""Globally-robust neural networks (Leino, Wang, Fredrikson, 2021, "Globally-Robust Neural
Networks", ICML; reference code klasleino/gloro).

A GloRo net adds a logit :math:`y_\bot` ("not robust") to a classifier :math:`f` with logits
:math:`y = f(x)` and predicted class :math:`j = \arg\max_i y_i`:

.. math::  y_\bot = \max_{i \ne j} \big(y_i + \varepsilon\, K_{ji}\big), \qquad
           K_{ji} = K_{sub}\, \|W_{[j]} - W_{[i]}\|_2 ,

with :math:`W` the last ``nn.Linear``'s weight (its rows are the Keras kernel's columns) and
:math:`K_{sub}` a Lipschitz bound of everything before it, so that :math:`K_{ji}` bounds the
Lipschitz constant of :math:`y_j - y_i`. If :math:`y_j > y_\bot`, no :math:`\delta` with
:math:`\|\delta\|_2 \le \varepsilon` can make any :math:`y_i` overtake :math:`y_j`: the net
predicts :math:`j` and certifies it at :math:`\varepsilon`; otherwise it answers :math:`\bot`.
The certified radius of the prediction is :math:`\min_{i\ne j}(y_j - y_i)/K_{ji}` (biases cancel).

Training is cross-entropy over the :math:`C+1` logits :math:`[y, y_\bot]` (the label is never
:math:`\bot`) with :math:`\varepsilon` ramped up during training and trained above the evaluation
:math:`\varepsilon`, as in the reference's configs (0.45 for 0.3 on MNIST).

Deviations from the reference: (1) only the predicted index :math:`j` is masked out of the max,
never every logit equal to :math:`y_j` (the reference's ``tf.where(y == y_j, -inf, ...)`` certifies
ties, gloro issue #9); a tie is never certified. (2) :math:`K_{sub}` during training is one
warm-started power iteration per dense layer (a lower bound, as the reference's cached iterates),
but in ``eval()`` mode it is the exact product of spectral norms by SVD
(:func:`course_lib.lipschitz.lipschitz_upper_bound_pairwise`), computed once per weight version:
certificates never rest on an unconverged estimate (the reference freezes a power-iteration value,
cf. gloro issue #8). (3) dense ``nn.Sequential`` nets only (no convolutions). (4) Plain CE, not the
TRADES-style loss of the current reference examples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..lipschitz.bounds import _layers, layer_lipschitz, lipschitz_upper_bound_pairwise
from ..lipschitz.certificates import check_logits
from ..validate import check_count, check_nonnegative, check_positive


class GloroNet(nn.Module):
    """A dense ``nn.Sequential`` classifier (ending in ``nn.Linear``) with GloRo's pairwise
    Lipschitz bounds. ``forward`` returns the ``C`` class logits unchanged; :meth:`gloro_logits`
    returns the ``C + 1`` logits, :meth:`certify` the prediction or ⊥ and the radius."""

    def __init__(self, model: nn.Sequential) -> None:
        super().__init__()
        layers = _layers(model)  # raises ValueError for a non-Sequential model
        if not isinstance(layers[-1], nn.Linear):
            raise ValueError("model must end with an nn.Linear layer (the logits)")
        for i, layer in enumerate(layers[:-1]):  # every layer must have a known bound
            if not isinstance(layer, nn.Linear):
                layer_lipschitz(layer, i)
        self.model = model
        self._dense = [m for m in layers[:-1] if isinstance(m, nn.Linear)]
        self._other = math.prod(
            layer_lipschitz(m, i) for i, m in enumerate(layers[:-1]) if not isinstance(m, nn.Linear)
        )
        gen = torch.Generator().manual_seed(0)
        for k, m in enumerate(self._dense):  # persistent power-iteration iterates (warm start)
            u = F.normalize(torch.randn(m.in_features, generator=gen), dim=0)
            self.register_buffer(f"u{k}", u)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (B, C)

    @property
    def head(self) -> nn.Linear:
        return _layers(self.model)[-1]

    def pairwise_lipschitz(self) -> torch.Tensor:
        r"""``K`` of shape ``(C, C)``: :math:`K_{ji} = K_{sub} \|W_{[j]} - W_{[i]}\|_2`.

        ``train()`` mode: :math:`K_{sub}` from one warm-started power iteration per dense layer,
        differentiable in the weights (GloRo's implicit Lipschitz regularisation). ``eval()``
        mode: the exact float64 bound, cached until a weight changes (sound for certificates)."""
        if not self.training:
            return self.frozen_lipschitz()
        k_sub = torch.ones((), device=self.head.weight.device) * self._other
        for k, m in enumerate(self._dense):
            u = getattr(self, f"u{k}")
            with torch.no_grad():
                v = F.normalize(m.weight @ u, dim=0)  # (out,)
                u.copy_(F.normalize(m.weight.T @ v, dim=0))  # (in,)
            k_sub = k_sub * (v @ m.weight @ u)  # Rayleigh estimate of sigma_1, with gradient
        W = self.head.weight  # (C, h)
        return k_sub * torch.cdist(W, W, compute_mode="donot_use_mm_for_euclid_dist")  # (C, C)

    def frozen_lipschitz(self) -> torch.Tensor:
        """The exact pairwise bounds (SVD of every dense layer, float64), cached per weights."""
        key = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
        if getattr(self, "_frozen_key", None) != key:
            self._frozen = lipschitz_upper_bound_pairwise(self.model).to(self.head.weight.device)
            self._frozen_key = key
        return self._frozen  # (C, C) float64

    def gloro_logits(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        """The ``C + 1`` logits ``[y, y_⊥]`` at radius ``eps``, shape ``(B, C + 1)``."""
        check_nonnegative(eps, "eps")
        y = self.model(x)  # (B, C)
        return torch.cat([y, bottom_logit(y, self.pairwise_lipschitz(), eps)[:, None]], 1)

    @torch.no_grad()
    def certify(self, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prediction, radius)``: the predicted class, or ``-1`` (⊥) where it is not certified
        at ``eps``, and the certified ℓ2 radius of the predicted class: one forward pass and the
        exact frozen bound (:meth:`frozen_lipschitz`) in either mode, not the training one."""
        check_nonnegative(eps, "eps")
        return gloro_certify(self.model(x), self.frozen_lipschitz(), eps)


def bottom_logit(logits: torch.Tensor, K: torch.Tensor, eps: float) -> torch.Tensor:
    r""":math:`y_\bot = \max_{i \ne j}(y_i + \varepsilon K_{ji})` with :math:`j` the argmax
    (the first one on ties); ``logits`` ``(B, C)``, ``K`` ``(C, C)``; returns ``(B,)``. Only index
    :math:`j` is masked, so a logit tied with :math:`y_j` makes :math:`y_\bot \ge y_j`."""
    _check(logits, K, eps)
    j = logits.argmax(1)  # (B,)
    shifted = logits + eps * K[j].to(logits.dtype)  # (B, C): y_i + eps K_ji
    mask = F.one_hot(j, logits.shape[1]).bool()  # (B, C): only the predicted index
    return shifted.masked_fill(mask, -torch.inf).amax(1)  # (B,)


def gloro_radius(logits: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    r"""Certified radius :math:`\min_{i \ne j}(y_j - y_i)/K_{ji}` of the predicted class, ``(B,)``
    float64; 0 on a tie, ``inf`` if every competitor has :math:`K_{ji} = 0` and a positive gap."""
    return gloro_certify(logits, K, 0.0)[1]


def gloro_certify(
    logits: torch.Tensor, K: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(prediction, radius)`` from logits ``(B, C)`` and bounds ``K`` ``(C, C)``, in float64:
    the argmax :math:`j` where :math:`y_j > y_\bot`, i.e. where
    :math:`\min_{i \ne j}(y_j - y_i - \varepsilon K_{ji}) > 0` (strictly: a tie is ⊥), else
    ``-1``; and :func:`gloro_radius`. One pass over ``(B, C)``: no second forward, no sort."""
    _check(logits, K, eps)
    y = logits.detach().double()  # (B, C)
    top, j = y.max(1, keepdim=True)  # (B, 1) each: y_j and j (the first index on ties)
    gap = top - y  # (B, C): y_j - y_i >= 0
    Kj = K.detach().to(y.device, torch.float64)[j.squeeze(1)]  # (B, C): K_ji
    r = torch.where(gap > 0, gap / Kj, 0.0)  # x / 0 = inf for gap > 0; a tie gives 0
    # only the predicted index is masked (set to +inf before the min), never tied logits
    r = r.scatter_(1, j, torch.inf).amin(1)  # (B,)
    # y_j > y_bot  <=>  y_j - y_i > eps K_ji for every i != j  <=>  r > eps (a tie: r = 0, never)
    j = j.squeeze(1)
    return torch.where(r > eps, j, torch.full_like(j, -1)), r


def eps_schedule(
    step: int, total_steps: int, eps_train: float, start: float = 0.01, ramp: float = 0.5
) -> float:
    r"""The reference's ``[start]-log-[ramp:1]`` schedule: :math:`\varepsilon` grows
    geometrically from ``start``·``eps_train`` to ``eps_train`` over the first ``ramp`` of the
    steps, then stays there. ``step`` counts from 0."""
    check_count(step, "step")
    check_count(total_steps, "total_steps", minimum=1)
    check_nonnegative(eps_train, "eps_train")
    check_positive(start, "start")
    if start > 1 or not 0 < ramp <= 1:
        raise ValueError(f"start must be in (0, 1] and ramp in (0, 1], got {start!r}, {ramp!r}")
    t = min(1.0, step / (ramp * total_steps))
    return eps_train * start ** (1 - t)


def gloro_loss(model: GloroNet, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Cross-entropy of the ``C + 1`` GloRo logits at ``eps`` against the labels (never ⊥)."""
    return F.cross_entropy(model.gloro_logits(x, eps), y)


def gloro_loss_fn(eps_train: float, total_steps: int, start: float = 0.01, ramp: float = 0.5):
    """``loss_fn(model, x, y)`` for :func:`course_lib.train.train_epoch` that follows
    :func:`eps_schedule` over ``total_steps`` calls (one per batch)."""
    eps_schedule(0, total_steps, eps_train, start, ramp)  # validates the arguments
    calls = [0]

    def loss_fn(model: GloroNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eps = eps_schedule(min(calls[0], total_steps), total_steps, eps_train, start, ramp)
        calls[0] += 1
        return gloro_loss(model, x, y, eps)

    return loss_fn


def _check(logits: torch.Tensor, K: torch.Tensor, eps: float) -> None:
    check_logits(logits)
    check_nonnegative(eps, "eps")
    C = logits.shape[1]
    if not isinstance(K, torch.Tensor) or tuple(K.shape) != (C, C):
        raise ValueError(f"K must be a tensor of shape ({C}, {C}), got {getattr(K, 'shape', K)}")
    if not torch.isfinite(K).all() or (K < 0).any():
        raise ValueError("K must hold finite Lipschitz bounds >= 0")
