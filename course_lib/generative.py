r"""Generators of extra training data for adversarial training, behind one interface.

Gowal et al. (2021, "Improving Robustness using Generated Data"), Rebuffi et al. (2021, "Fixing
Data Augmentation to Improve Adversarial Robustness") and Wang et al. (2023, "Better Diffusion
Models Further Improve Adversarial Training") add samples of a generative model fitted on the
*training set only* to adversarial training. Every generator here answers

    ``sample(n, labels=None) -> (x, y)``: ``x`` (n, C, H, W) pixels in [0, 1], ``y`` (n,) int64,

in the lecture's two variants: a **conditional** generator draws :math:`g(z \mid y_j)` for the
labels asked for (or for classes drawn with the training frequencies when ``labels`` is None);
an **unconditional** one draws :math:`g(z)` and :class:`PseudoLabelled` labels it with a
classifier :math:`\mathcal T` trained on the same data, :math:`(g(z), \arg\max \mathcal T(g(z)))`.

:class:`ClassGaussians` (one Gaussian per class in a PCA subspace) is the cheap generator of the
quick profile; the small DDPM of Ho et al. (2020) is in :mod:`course_lib.ddpm`.
"""

from __future__ import annotations

import torch
from torch import nn

from .train import predict
from .validate import check_count, check_labels, check_pixels


def check_sample_args(n: int, labels: torch.Tensor | None, num_classes: int) -> None:
    """``n >= 1``; ``labels`` None or ``n`` class indices in ``[0, num_classes)``."""
    check_count(n, "n", minimum=1)
    if labels is None:
        return
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,) or labels.is_floating_point():
        raise ValueError(f"labels must be None or an int tensor of shape ({n},), got {labels}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got {labels.unique()}")


class ClassGaussians(nn.Module):
    r"""One Gaussian per class in the top-``k`` PCA subspace of the training images.

    Fit: :math:`\mu_c` = class mean, :math:`V` = the top ``k`` principal directions of the pooled
    centred images, :math:`\Sigma_c` = the covariance of class :math:`c`'s coordinates in that
    basis. Sample: :math:`x = \mathrm{clip}_{[0,1]}\big(\mu_c + V L_c z\big)`,
    :math:`z \sim \mathcal N(0, I_k)`, :math:`L_c L_c^\top = \Sigma_c` (Cholesky). The clip is part
    of the generator (a Gaussian has unbounded support, pixels do not). Blurry but digit-like
    samples in milliseconds: a stand-in for a diffusion model where a CPU budget forbids one.
    """

    def __init__(self, shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, k: int = 30):
        super().__init__()
        check_count(k, "k", minimum=1)
        check_count(num_classes, "num_classes", minimum=2)
        d = int(torch.tensor(shape).prod())
        self.shape, self.k = tuple(shape), k
        self.register_buffer("mu", torch.zeros(num_classes, d))  # (K, D)
        self.register_buffer("V", torch.zeros(d, k))  # (D, k)
        self.register_buffer("L", torch.zeros(num_classes, k, k))  # (K, k, k)
        self.register_buffer("prior", torch.full((num_classes,), 1 / num_classes))  # (K,)

    @property
    def num_classes(self) -> int:
        return self.mu.shape[0]

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> ClassGaussians:
        """Fit means, the PCA basis and per-class covariances to ``x (N, C, H, W)``, ``y (N,)``."""
        check_pixels(x)
        check_labels(x, y, num_classes=self.num_classes)
        flat = x.flatten(1).to(self.mu)  # (N, D)
        counts = torch.bincount(y, minlength=self.num_classes)
        if (counts < 2).any():
            raise ValueError(f"every class needs >= 2 samples to fit, got counts {counts.tolist()}")
        _, _, Vh = torch.linalg.svd(flat - flat.mean(0), full_matrices=False)
        self.V.copy_(Vh[: self.k].T)  # (D, k)
        for c in range(self.num_classes):
            xc = flat[y == c]  # (N_c, D)
            self.mu[c] = xc.mean(0)
            z = (xc - self.mu[c]) @ self.V  # (N_c, k)
            cov = z.T @ z / (len(z) - 1) + 1e-5 * torch.eye(self.k, device=z.device)  # (k, k)
            self.L[c] = torch.linalg.cholesky(cov)
        self.prior.copy_(counts / counts.sum())
        return self

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None):
        """``n`` images of classes ``labels`` (default: drawn from the training frequencies)."""
        check_sample_args(n, labels, self.num_classes)
        y = torch.multinomial(self.prior, n, replacement=True) if labels is None else labels
        y = y.to(self.mu.device)
        z = torch.randn(n, self.k, 1, device=self.mu.device)  # (n, k, 1)
        coords = (self.L[y] @ z).squeeze(-1)  # (n, k)
        x = self.mu[y] + coords @ self.V.T  # (n, D)
        return x.clamp(0, 1).view(n, *self.shape), y


class Unconditional(nn.Module):
    """A conditional generator with its labels thrown away: ``sample(n)`` returns ``y = -1``.

    The marginal of :class:`ClassGaussians` is a Gaussian mixture over all images (weights = the
    class frequencies); pairing it with :class:`PseudoLabelled` gives the lecture's unconditional
    variant without fitting a second model.
    """

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def sample(self, n: int, labels: torch.Tensor | None = None):
        if labels is not None:
            raise ValueError("labels must be None: an unconditional generator cannot honour them")
        x, _ = self.generator.sample(n)
        return x, torch.full((n,), -1, dtype=torch.long, device=x.device)


class PseudoLabelled(nn.Module):
    r"""Unconditional generator + pseudo-labels: :math:`(g(z), \arg\max_k \mathcal T(g(z))_k)`.

    ``teacher`` is the classifier :math:`\mathcal T`, trained on the same training data as the
    generator (Gowal et al. 2021 use a standard non-robust classifier). Its mistakes become label
    noise in the generated data.
    """

    def __init__(self, generator: nn.Module, teacher: nn.Module):
        super().__init__()
        self.generator, self.teacher = generator, teacher

    def sample(self, n: int, labels: torch.Tensor | None = None):
        if labels is not None:
            raise ValueError("labels must be None: pseudo-labels come from the teacher")
        x, _ = self.generator.sample(n)
        was_training = self.teacher.training
        self.teacher.eval()
        y = predict(self.teacher, x)  # (n,)
        self.teacher.train(was_training)
        return x, y
