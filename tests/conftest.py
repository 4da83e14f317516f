"""Shared fixtures: tiny models trained in about a second on the CPU."""

import pytest
import torch

from course_lib.config import seed_everything
from course_lib.data import TensorLoader, load_mnist5k
from course_lib.models import small_cnn
from course_lib.train import fit


@pytest.fixture(scope="session")
def mnist():
    return load_mnist5k()


@pytest.fixture(scope="session")
def mnist_model(mnist):
    """A small CNN trained for 2 epochs on MNIST-5k (~97% test accuracy)."""
    seed_everything(0)
    model = small_cnn()
    fit(model, TensorLoader(mnist.x_train, mnist.y_train, batch_size=64), epochs=2, lr=2e-3)
    return model.eval()


@pytest.fixture
def random_cnn():
    """An untrained CNN with fixed weights, and a batch of random images."""
    seed_everything(0)
    model = small_cnn().eval()
    x = torch.rand(16, 1, 28, 28)
    y = torch.randint(0, 10, (16,))
    return model, x, y
