r"""A small class-conditional DDPM (Ho, Jain & Abbeel, 2020, "Denoising Diffusion Probabilistic
Models") for generating extra training digits.

**Forward process** (fixed): with :math:`\beta_1 < \dots < \beta_T` (linear, 1e-4 to 0.02),
:math:`\alpha_t = 1 - \beta_t`, :math:`\bar\alpha_t = \prod_{s \le t} \alpha_s`,

.. math::  q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\, x_0,\ (1 - \bar\alpha_t) I\big),
           \qquad x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\varepsilon.

**Training** (their Algorithm 1, the "simple" loss): :math:`t \sim U\{1..T\}`,
:math:`\varepsilon \sim \mathcal N(0, I)`, minimise
:math:`\|\varepsilon - \varepsilon_\theta(x_t, t, y)\|^2`.

**Sampling** (Algorithm 2, ancestral): :math:`x_T \sim \mathcal N(0, I)`, then for
:math:`t = T..1`

.. math::  x_{t-1} = \tfrac{1}{\sqrt{\alpha_t}}\Big(x_t - \tfrac{\beta_t}{\sqrt{1-\bar\alpha_t}}
           \varepsilon_\theta(x_t, t, y)\Big) + \sigma_t z, \quad \sigma_t^2 = \beta_t,
           \ z \sim \mathcal N(0, I) \ (z = 0 \text{ at } t = 1).

Deviations from the paper: a tiny two-level conv net instead of their 35.7M-parameter U-Net (no
attention, no dropout, group norm with 8 groups), a learned label embedding added to the time
embedding for class conditioning (their model is unconditional), no EMA of the weights; pixels
are mapped from [0, 1] to [-1, 1] and back, and the final sample is clipped to [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .generative import check_sample_args
from .validate import check_count, check_labels, check_pixels


def linear_betas(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """Ho et al.'s linear noise schedule, rescaled so that a shorter chain (T < 1000) ends at
    the same noise level: :math:`\\beta_t \\cdot 1000 / T`."""
    check_count(T, "T", minimum=1)
    scale = 1000 / T
    return torch.linspace(beta_1 * scale, min(beta_T * scale, 0.999), T)  # (T,)


class _Block(nn.Module):
    """conv -> group norm -> + embedding (as a per-channel shift) -> SiLU -> conv, residual."""

    def __init__(self, c_in: int, c_out: int, d_emb: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm1, self.norm2 = nn.GroupNorm(8, c_out), nn.GroupNorm(8, c_out)
        self.emb = nn.Linear(d_emb, c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        out = F.silu(self.norm1(self.conv1(h)) + self.emb(e)[:, :, None, None])
        return F.silu(self.norm2(self.conv2(out))) + self.skip(h)


class EpsNet(nn.Module):
    r""":math:`\varepsilon_\theta(x_t, t, y)`: a two-level U-Net (28 -> 14 -> 7 -> 14 -> 28)."""

    def __init__(self, channels: int = 1, width: int = 32, num_classes: int = 10):
        super().__init__()
        d = 4 * width
        self.width = width
        self.time = nn.Sequential(nn.Linear(width, d), nn.SiLU(), nn.Linear(d, d))
        self.label = nn.Embedding(num_classes, d)
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.down1, self.down2 = _Block(width, width, d), _Block(width, 2 * width, d)
        self.mid = _Block(2 * width, 2 * width, d)
        self.up2, self.up1 = _Block(4 * width, width, d), _Block(2 * width, width, d)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """Sinusoidal embedding of the step ``t (B,)`` (Vaswani et al., 2017), then an MLP."""
        half = self.width // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)  # (w/2,)
        angles = t.float()[:, None] * freqs  # (B, w/2)
        return self.time(torch.cat([angles.sin(), angles.cos()], 1))  # (B, d)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e = self.embed_time(t) + self.label(y)  # (B, d)
        h1 = self.down1(self.inp(x), e)  # (B, w, 28, 28)
        h2 = self.down2(F.avg_pool2d(h1, 2), e)  # (B, 2w, 14, 14)
        h = self.mid(F.avg_pool2d(h2, 2), e)  # (B, 2w, 7, 7)
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2), h2], 1), e)  # (B, w, 14, 14)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2), h1], 1), e)  # (B, w, 28, 28)
        return self.out(h)


class DDPM(nn.Module):
    """The diffusion chain (schedule buffers) around :class:`EpsNet`; see the module docstring."""

    def __init__(self, T: int = 1000, shape=(1, 28, 28), width: int = 32, num_classes: int = 10):
        super().__init__()
        self.shape, self.num_classes = tuple(shape), num_classes
        self.eps_net = EpsNet(shape[0], width, num_classes)
        beta = linear_betas(T)  # (T,)
        self.register_buffer("beta", beta)
        self.register_buffer("alpha_bar", torch.cumprod(1 - beta, 0))  # (T,)
        self.register_buffer("prior", torch.full((num_classes,), 1 / num_classes))  # (K,)

    @property
    def T(self) -> int:
        return self.beta.shape[0]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        r""":math:`x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1-\bar\alpha_t}\varepsilon` (0-based
        ``t``, ``x0`` in [-1, 1])."""
        a = self.alpha_bar[t].view(-1, *[1] * (x0.ndim - 1))  # (B, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""The simple loss :math:`\mathbb E\,\|\varepsilon - \varepsilon_\theta(x_t, t, y)\|^2`
        (mean over pixels) on images ``x`` in [0, 1]."""
        check_pixels(x)
        check_labels(x, y, num_classes=self.num_classes)
        x0 = 2 * x - 1  # [0, 1] -> [-1, 1]
        t = torch.randint(0, self.T, (x.shape[0],), device=x.device)  # (B,)
        eps = torch.randn_like(x0)
        return F.mse_loss(self.eps_net(self.q_sample(x0, t, eps), t, y), eps)

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None):
        """Ancestral sampling: ``n`` images in [0, 1] of classes ``labels`` (default: drawn with
        the training class frequencies kept in ``prior``)."""
        check_sample_args(n, labels, self.num_classes)
        dev = self.beta.device
        y = torch.multinomial(self.prior, n, replacement=True) if labels is None else labels
        y = y.to(dev)
        x = torch.randn(n, *self.shape, device=dev)  # x_T
        for t in reversed(range(self.T)):
            tt = torch.full((n,), t, device=dev, dtype=torch.long)
            beta, a_bar = self.beta[t], self.alpha_bar[t]
            mean = (x - beta / (1 - a_bar).sqrt() * self.eps_net(x, tt, y)) / (1 - beta).sqrt()
            x = mean + beta.sqrt() * torch.randn_like(x) if t > 0 else mean
        return ((x + 1) / 2).clamp(0, 1), y


def train_ddpm(
    model: DDPM,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float = 2e-4,
    batch_size: int = 128,
    desc: str = "ddpm",
) -> list[float]:
    """Adam on :meth:`DDPM.loss` for ``steps`` mini-batches drawn with replacement; stores the
    class frequencies in ``model.prior``. Returns the loss per step."""
    from tqdm.auto import tqdm

    check_count(steps, "steps", minimum=1)
    check_count(batch_size, "batch_size", minimum=1)
    check_labels(x, y, num_classes=model.num_classes)
    model.prior.copy_(torch.bincount(y, minlength=model.num_classes) / len(y))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc=desc, leave=False):
        idx = torch.randint(0, x.shape[0], (batch_size,), device=x.device)
        loss = model.loss(x[idx], y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
