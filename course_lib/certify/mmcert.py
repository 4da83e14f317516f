r"""MMCert (Wang, Fu, Zou & Jia, CVPR 2024, "MMCert: Provable Defense against Adversarial Attacks
to Multi-modal Models"): certified robustness of a multi-modal classifier against per-modality
:math:`\ell_0` attacks by *independent sub-sampling* of each modality.

An input has :math:`T` modalities :math:`x = (x_1, \dots, x_T)` with :math:`n_i` features each. The
attacker changes at most :math:`r_i` features of modality :math:`i` (the count :math:`n_i` stays:
the paper's *modification* attack, :math:`n_i' = n_i`). The ensemble draws, independently per
modality, :math:`k_i` of the :math:`n_i` feature indices uniformly without replacement; the base
classifier :math:`f` sees the kept features and a mask, every other feature set to ``fill``. The
smoothed classifier is :math:`g(x) = \arg\max_c p_c(x)`, :math:`p_c(x) = \mathbb P(f(Z(x)) = c)`.

**The certificate implemented** (:func:`certified`): with
:math:`\Delta(r) = 1 - \prod_i \binom{n_i - r_i}{k_i} / \binom{n_i}{k_i}`, the prediction
:math:`A` is certified against every attack of size :math:`(r_1, \dots, r_T)` if

.. math::  \underline{p_A} - \Delta(r) > \tfrac12 ,

:math:`\underline{p_A}` a one-sided Clopper–Pearson lower bound at level :math:`\alpha` from
estimation samples that did not choose :math:`A`. *Proof.* (1) Use the same index draw for
:math:`x` and :math:`x'`; a draw that keeps none of the changed features gives identical ablated
inputs, and it has probability :math:`\prod_i \binom{n_i-r_i}{k_i}/\binom{n_i}{k_i} = 1 - \Delta`
(independent modalities). (2) So :math:`|p_c(x') - p_c(x)| \le \Delta` for every class :math:`c`.
(3) :math:`p_A(x') \ge \underline{p_A} - \Delta > \tfrac12`, hence :math:`A` is the strict
majority at :math:`x'`, with probability :math:`\ge 1-\alpha` over the Monte Carlo samples.

**Relation to the paper.** The condition as the lecture's slide "Certified Multi-Modal
Classification" states MMCert's classification theorem (we could not read the paper's theorem
number or proof) is
:math:`\tfrac{\prod\binom{n_i}{k_i}}{\prod\binom{n_i'}{k_i'}}(\underline{p_A} - \delta_l - 1 +
\tfrac{\prod\binom{e_i}{k_i'}}{\prod\binom{n_i}{k_i'}}) \ge \dots
(\overline{p_B} + \delta_u) + 1 - \dots` with :math:`e_i = n_i - r_i`. For modification attacks
(:math:`n_i' = n_i`, :math:`k_i' = k_i`) it reads :math:`\underline{p_A} - \delta_l - \Delta \ge
\overline{p_B} + \delta_u + \Delta`; with :math:`\overline{p_B} = 1 - \underline{p_A}` this is our
condition up to the rounding terms :math:`\delta_l, \delta_u` (we could not read their definition;
if, as in Jia et al.'s earlier ablation certificates, they round to multiples of
:math:`1/\prod\binom{n_i}{k_i}`, they are below :math:`10^{-20}` here) and :math:`\ge` vs our
strict :math:`>`. We could not read the paper's proof or code, so this module rests on the
three-line proof above, not on the paper. Where ours can be looser: the paper may bound
:math:`\overline{p_B}` separately (tighter when the remaining votes spread over several classes),
and it also covers feature addition and deletion (:math:`n_i' \ne n_i`), which we do not.

Deviations: votes are counted with ``torch.bincount`` in batches; masks are drawn by ranking
uniform noise (``argsort``), which gives uniform :math:`k_i`-subsets.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import nn

from ..validate import check_count, check_probability
from .smoothing import clopper_pearson_lower

ABSTAIN = -1


def _check_sizes(n: Sequence[int], k: Sequence[int]) -> None:
    if len(n) != len(k) or len(n) == 0:
        raise ValueError(f"n and k need one entry per modality, got {len(n)} and {len(k)}")
    for i, (n_i, k_i) in enumerate(zip(n, k, strict=True)):
        check_count(n_i, f"n[{i}]", minimum=1)
        if isinstance(k_i, bool) or not isinstance(k_i, numbers.Integral) or not 1 <= k_i <= n_i:
            raise ValueError(
                f"k[{i}] (kept count) must be an integer in [1, n[{i}]={n_i}], got {k_i!r}"
            )


def _check_attacked(r: Sequence[int], n: Sequence[int]) -> None:
    for i, (r_i, n_i) in enumerate(zip(r, n, strict=True)):
        if isinstance(r_i, bool) or not isinstance(r_i, numbers.Integral) or not 0 <= r_i <= n_i:
            raise ValueError(
                f"r[{i}] (attacked count) must be an integer in [0, {n_i}], got {r_i!r}"
            )


def unaffected_probability(n: Sequence[int], k: Sequence[int], r: Sequence[int]) -> Fraction:
    r""":math:`\prod_i \binom{n_i - r_i}{k_i} / \binom{n_i}{k_i}` exactly: the chance that the
    independent sub-samples keep none of the :math:`r_i` changed features of any modality."""
    _check_sizes(n, k)
    if len(r) != len(n):
        raise ValueError(f"r needs one entry per modality ({len(n)}), got {len(r)}")
    _check_attacked(r, n)
    out = Fraction(1)
    for n_i, k_i, r_i in zip(n, k, r, strict=True):
        out *= Fraction(math.comb(n_i - r_i, k_i), math.comb(n_i, k_i))  # comb = 0 if n-r < k
    return out


def delta(n: Sequence[int], k: Sequence[int], r: Sequence[int]) -> float:
    r""":math:`\Delta = 1 - \prod_i \binom{n_i - r_i}{k_i}/\binom{n_i}{k_i}`, the largest change
    an attack of size :math:`r` can make to any class probability; 1 once some
    :math:`r_i > n_i - k_i` (every sub-sample may then see a changed feature)."""
    return float(1 - unaffected_probability(n, k, r))


def delta_grid(n: Sequence[int], k: Sequence[int], r1: Sequence[int], r2: Sequence[int]):
    r""":math:`\Delta(r_1, r_2)` on a grid for two modalities: ``(len(r1), len(r2))`` float64."""
    return torch.tensor([[delta(n, k, (a, b)) for b in r2] for a in r1], dtype=torch.float64)


def certified(p_A_lower: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    r"""The certificate :math:`\underline{p_A} - \Delta > \tfrac12` for every input and every
    attack size: ``p_A_lower (B,)``, ``deltas (...)`` → bool ``(B, ...)``. Abstentions carry
    :math:`\underline{p_A} \le \tfrac12` and are never certified."""
    p = torch.as_tensor(p_A_lower, dtype=torch.float64).reshape(-1, *([1] * deltas.dim()))
    return p - deltas.to(torch.float64).unsqueeze(0) > 0.5


def subsample_masks(
    rows: int, n: int, k, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """``(rows, n)`` bool masks with exactly ``k`` True per row, each a uniform ``k``-subset.
    ``k`` is an int or a ``(rows,)`` tensor of kept counts (one per row, for training)."""
    noise = torch.rand(rows, n, generator=generator, device=device)  # (rows, n)
    rank = noise.argsort(dim=1).argsort(dim=1)  # a uniform random permutation per row
    k_col = torch.as_tensor(k, device=rank.device).reshape(-1, 1)  # (rows or 1, 1)
    return rank < k_col  # (rows, n)


def ablate(xs: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], fill: float = 0.0):
    """The base classifier's input: per modality the kept values (others set to ``fill``) and the
    mask as a second channel, concatenated: ``(rows, 2 * sum(n_i))``."""
    parts = []
    for x, m in zip(xs, masks, strict=True):
        # where, not x * m: a dropped inf or NaN must not reach the model (0 * inf = NaN would)
        parts += [torch.where(m.bool(), x, torch.full_like(x, fill)), m.to(x.dtype)]  # (rows, n_i)
    return torch.cat(parts, dim=1)


class MMCert:
    """The sub-sampling ensemble of ``base_model`` (input :func:`ablate`'s ``(rows, 2 sum n_i)``,
    output logits ``(rows, num_classes)``) keeping ``k[i]`` of the ``n[i]`` features of each
    modality. Put the model in ``eval()`` mode yourself."""

    def __init__(self, base_model: nn.Module, num_classes: int, n: Sequence[int], k: Sequence[int]):
        check_count(num_classes, "num_classes", minimum=2)
        _check_sizes(n, k)
        self.base_model, self.num_classes = base_model, num_classes
        self.n, self.k = tuple(n), tuple(k)

    @torch.no_grad()
    def votes(self, xs: Sequence[torch.Tensor], num: int, generator=None, batch_size=8192):
        """``(B, num_classes)`` vote counts of ``num`` independent sub-samples per input;
        ``xs[i]`` is ``(B, n_i)``."""
        check_count(num, "num", minimum=1)
        if len(xs) != len(self.n) or any(
            x.shape[1:] != (m,) for x, m in zip(xs, self.n, strict=True)
        ):
            raise ValueError(f"xs must be {len(self.n)} tensors (B, n_i) with n = {self.n}")
        B, K, dev = xs[0].shape[0], self.num_classes, xs[0].device
        votes = torch.zeros(B * K, dtype=torch.long, device=dev)
        for start in range(0, B * num, batch_size):
            owner = torch.arange(start, min(start + batch_size, B * num), device=dev) // num
            masks = [
                subsample_masks(len(owner), n_i, k_i, generator, dev)
                for n_i, k_i in zip(self.n, self.k, strict=True)
            ]
            pred = self.base_model(ablate([x[owner] for x in xs], masks)).argmax(1)  # (rows,)
            votes += torch.bincount(owner * K + pred, minlength=B * K)
        return votes.view(B, K)

    def predict(self, xs: Sequence[torch.Tensor], n_samples: int, alpha: float, generator=None):
        """The certified prediction at :math:`r = 0`: the class, or ``-1`` (abstain)."""
        return self.certify(xs, n_samples, alpha, generator=generator)[0]

    def certify(
        self, xs: Sequence[torch.Tensor], n_samples: int, alpha: float, n0: int = 32, generator=None
    ):
        r"""Cohen-style CERTIFY: choose :math:`A` with ``n0`` sub-samples, count it in
        ``n_samples`` fresh ones, :math:`\underline{p_A}` = one-sided Clopper–Pearson lower bound
        at level ``alpha``. Returns
        ``(prediction (B,), p_A_lower (B,))``; the prediction is ``-1`` (abstain) when
        :math:`\underline{p_A} \le 1/2`. Pass ``p_A_lower`` to :func:`certified` for any
        :math:`r`."""
        check_count(n0, "n0", minimum=1)
        check_count(n_samples, "n_samples", minimum=1)
        check_probability(alpha, "alpha")
        A = self.votes(xs, n0, generator).argmax(1)  # (B,)
        n_A = self.votes(xs, n_samples, generator).gather(1, A[:, None]).squeeze(1)  # (B,)
        p_A_lower = clopper_pearson_lower(n_A.cpu(), n_samples, alpha)  # (B,)
        return torch.where(p_A_lower > 0.5, A.cpu(), ABSTAIN), p_A_lower


@torch.no_grad()
def l0_random_search(
    cert: MMCert,
    xs: Sequence[torch.Tensor],
    target: torch.Tensor,
    r: Sequence[int],
    tries: int,
    num: int,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    r"""A per-modality :math:`\ell_0` attack on the *smoothed* classifier, for soundness checks:
    per input, ``tries`` candidates, each setting :math:`r_i` random features of modality
    :math:`i` to the far end of [0, 1] (:math:`1 - \mathrm{round}(x)`); keeps the candidate with
    the fewest votes for ``target (B,)`` among ``num`` sub-samples. Returns the attacked
    modalities, ``(B, n_i)`` each, with exactly :math:`r_i` changed features."""
    check_count(tries, "tries", minimum=1)
    if len(r) != len(xs):
        raise ValueError(f"r needs one entry per modality ({len(xs)}), got {len(r)}")
    _check_attacked(r, [x.shape[1] for x in xs])
    B = xs[0].shape[0]
    candidates = []
    for x, r_i in zip(xs, r, strict=True):
        rows = x.repeat_interleave(tries, 0)  # (B * tries, n_i)
        where = subsample_masks(B * tries, x.shape[1], r_i, generator, x.device)  # r_i True/row
        candidates.append(torch.where(where, 1 - rows.round(), rows))
    votes = cert.votes(candidates, num, generator)  # (B * tries, C)
    owner = target.to(votes.device).repeat_interleave(tries)[:, None]  # (B * tries, 1)
    best = votes.gather(1, owner).view(B, tries).argmin(1)  # (B,)
    pick = torch.arange(B, device=votes.device) * tries + best
    return [c[pick] for c in candidates]
