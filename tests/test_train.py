import pytest
import torch

from course_lib.attacks import pgd
from course_lib.config import seed_everything
from course_lib.data import TensorLoader, load_toy2d
from course_lib.models import Normalize, count_parameters, mlp, small_cnn
from course_lib.train import (
    accuracy,
    cross_entropy_loss,
    fit,
    pgd_at_loss,
    robust_accuracy,
    train_epoch,
)


def test_fit_learns_moons():
    seed_everything(0)
    x, y = load_toy2d("moons", n=300, noise=0.1, seed=0)
    model = mlp(2, (32, 32), 2)
    before = accuracy(model, x, y)
    history = fit(model, TensorLoader(x, y, 64), epochs=40, lr=1e-2)
    assert history[-1] < history[0]
    assert accuracy(model, x, y) > max(0.9, before)


def test_train_epoch_restores_the_previous_mode():
    x, y = load_toy2d("moons", n=64)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.eval()
    train_epoch(model, TensorLoader(x, y, 32), cross_entropy_loss, opt)
    assert not model.training
    model.train()
    train_epoch(model, TensorLoader(x, y, 32), cross_entropy_loss, opt)
    assert model.training


def test_pgd_at_loss_is_at_least_the_clean_loss(mnist_model, mnist):
    x, y = mnist.x_test[:200], mnist.y_test[:200]
    clean = cross_entropy_loss(mnist_model, x, y)
    adv = pgd_at_loss(eps=0.1, steps=5)(mnist_model, x, y)
    assert adv > clean
    adv.backward()  # differentiable in the parameters
    assert all(p.grad is not None for p in mnist_model.parameters())
    mnist_model.zero_grad(set_to_none=True)


def test_robust_accuracy_is_at_most_clean_accuracy(mnist_model, mnist):
    x, y = mnist.x_test[:300], mnist.y_test[:300]
    clean = accuracy(mnist_model, x, y)
    robust = robust_accuracy(mnist_model, x, y, lambda m, a, b: pgd(m, a, b, 0.1), batch_size=128)
    assert 0 <= robust < clean
    zero = robust_accuracy(mnist_model, x, y, lambda m, a, b: pgd(m, a, b, 0.0))
    assert zero == pytest.approx(clean)


def test_accuracy_rejects_mismatched_batches(mnist_model, mnist):
    with pytest.raises(ValueError, match="batch sizes differ"):
        accuracy(mnist_model, mnist.x_test[:10], mnist.y_test[:9])


def test_models_take_pixels_and_have_the_promised_size():
    model = small_cnn()
    assert isinstance(model[0], Normalize)
    assert 90_000 < count_parameters(model) < 130_000
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    cifar = small_cnn(3, 10, 32, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert cifar(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="std"):
        Normalize((0.5,), (0.0,))
