r"""Adversarial training with generated data: every mini-batch mixes real and generated samples.

Gowal et al. (2021) and Rebuffi et al. (2021) (DeepMind code: ``supervised_batch_ratio=0.3``) and
Wang et al. (2023) (``unsup_fraction=0.7``) build each batch of size :math:`B` from
:math:`B - \lfloor fB \rceil` real samples (reshuffled every epoch) and :math:`\lfloor fB \rceil`
generated ones drawn at random from a fixed pool, :math:`f = 0.7`. The training loss is the
usual one on the mixed batch: the augmented set of the lecture,
:math:`\mathcal D_{aug} = \mathcal D \cup \mathcal D_{fake}`, sampled at a set ratio rather than in
proportion to the two sizes (the pool is usually much larger than :math:`\mathcal D`).
:func:`generate_pool` draws :math:`\mathcal D_{fake}` once from any generator with
``sample(n, labels=None) -> (x, y)``.

Deviations from the references: the loss here is PGD-AT's (they use TRADES with label smoothing
and an EMA of the weights), and an epoch is a fixed number of batches (``steps``) so that runs
with 0x, 1x, 2x and 4x generated data take the same number of optimizer steps.
"""

from __future__ import annotations

import math

import torch

from ..validate import check_batch, check_count


def generate_pool(generator, n: int, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """:math:`\\mathcal D_{fake}`: ``n`` samples of ``generator.sample`` in chunks, classes drawn
    by the generator (conditional) or labelled by its teacher (pseudo-labels)."""
    check_count(n, "n", minimum=1)
    check_count(batch_size, "batch_size", minimum=1)
    parts = [generator.sample(min(batch_size, n - i)) for i in range(0, n, batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


class MixedLoader:
    """Batches of ``batch_size`` with ``round(fraction * batch_size)`` generated samples.

    The real part walks through ``(x, y)`` reshuffled every pass (wrapping around, so every batch
    is full); the generated part draws uniformly with replacement from ``generated``. Each batch
    is shuffled, so the position of a sample says nothing about its origin. ``steps`` batches
    make one epoch (default: enough for one pass over the real data).
    """

    def __init__(
        self,
        real: tuple[torch.Tensor, torch.Tensor],
        generated: tuple[torch.Tensor, torch.Tensor] | None,
        fraction: float = 0.7,
        batch_size: int = 128,
        steps: int | None = None,
        seed: int = 0,
    ):
        x, y = real
        check_batch(x, "real x")
        check_count(batch_size, "batch_size", minimum=1)
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not (0 <= fraction <= 1)
        ):
            raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"real x and y must have equal length, got {x.shape[0]}, {y.shape[0]}")
        self.n_gen = round(fraction * batch_size)
        self.n_real = batch_size - self.n_gen
        if self.n_gen > 0 and (generated is None or generated[0].shape[0] == 0):
            raise ValueError(f"generated must hold samples when fraction > 0, got {fraction}")
        if generated is not None and generated[0].shape[1:] != x.shape[1:]:
            raise ValueError(
                f"generated x must have shape (n, {tuple(x.shape[1:])}), "
                f"got {tuple(generated[0].shape)}"
            )
        if steps is None:
            steps = math.ceil(x.shape[0] / max(self.n_real, 1)) if self.n_real else 1
        check_count(steps, "steps", minimum=1)
        self.real, self.generated, self.steps = (x, y), generated, steps
        self.generator = torch.Generator().manual_seed(seed)
        self._order, self._pos = torch.empty(0, dtype=torch.long), 0

    def __len__(self) -> int:
        return self.steps

    def _next_real(self) -> torch.Tensor:
        """The next ``n_real`` indices of the real data, reshuffling at the end of each pass."""
        taken = []
        need = self.n_real
        while need > 0:
            if self._pos >= len(self._order):
                self._order = torch.randperm(self.real[0].shape[0], generator=self.generator)
                self._pos = 0
            chunk = self._order[self._pos : self._pos + need]
            taken.append(chunk)
            self._pos += len(chunk)
            need -= len(chunk)
        return torch.cat(taken) if taken else torch.empty(0, dtype=torch.long)

    def __iter__(self):
        x, y = self.real
        for _ in range(self.steps):
            idx = self._next_real().to(x.device)
            xs, ys = [x.index_select(0, idx)], [y.index_select(0, idx)]
            if self.n_gen:
                gx, gy = self.generated
                j = torch.randint(gx.shape[0], (self.n_gen,), generator=self.generator)
                xs.append(gx.index_select(0, j.to(gx.device)).to(x.device))
                ys.append(gy.index_select(0, j.to(gy.device)).to(y.device))
            perm = torch.randperm(self.n_real + self.n_gen, generator=self.generator).to(x.device)
            yield torch.cat(xs)[perm], torch.cat(ys)[perm]
