"""Small models that train in seconds on a laptop CPU.

Every model takes pixels in [0, 1]: normalisation is its first layer (:class:`Normalize`), never a
step of the data pipeline, so that attacks and certificates speak about real pixel budgets.
No training code lives here (see :mod:`course_lib.train`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .validate import check_count

# Per-channel statistics of the training sets, for Normalize.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    r""":math:`(x - \mu) / s` per channel, as the first layer of a model.

    Because it sits inside the model, an :math:`\varepsilon` of 8/255 always means 8 grey levels of
    the real image, and gradients flow through it to the pixels.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError("mean and std must have the same length and std must be > 0")
        # buffers move with .to(device) and are saved in the state dict
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # (B, C, H, W)


def mlp(in_dim: int = 2, hidden: Sequence[int] = (64, 64), num_classes: int = 2) -> nn.Sequential:
    """A ReLU multilayer perceptron ``in_dim -> hidden... -> num_classes`` (flattens its input)."""
    check_count(in_dim, "in_dim", minimum=1)
    check_count(num_classes, "num_classes", minimum=2)
    layers: list[nn.Module] = [nn.Flatten()]
    widths = [in_dim, *hidden]
    for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], num_classes))
    return nn.Sequential(*layers)


def small_cnn(
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: int = 28,
    mean: Sequence[float] = MNIST_MEAN,
    std: Sequence[float] = MNIST_STD,
) -> nn.Sequential:
    """Two strided 5x5 convolutions and two dense layers (about 100k parameters on MNIST).

    Strides instead of max-pooling keep it ~10x faster on a CPU while reaching ~98% on MNIST.
    """
    check_count(image_size, "image_size", minimum=8)
    side = (image_size + 3) // 4  # two stride-2 convolutions with padding 2
    return nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(in_channels, 16, kernel_size=5, stride=2, padding=2),  # (B, 16, H/2, W/2)
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=5, stride=2, padding=2),  # (B, 32, H/4, W/4)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * side * side, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
