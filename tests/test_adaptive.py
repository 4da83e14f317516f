"""BPDA and EOT (Athalye, Carlini & Wagner 2018) as surrogate models for the gradient attacks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import adaptive
from course_lib.adaptive import bpda, eot
from course_lib.attacks import input_gradient, pgd
from course_lib.defenses import Defended
from course_lib.defenses.deflection import PixelDeflection
from course_lib.defenses.randomization import RandomResizePad
from course_lib.models import small_cnn
from course_lib.train import robust_accuracy


class Quantize(nn.Module):  # a shattered transform: rounding to 4 levels
    def forward(self, x):
        return torch.round(x * 3) / 3


def test_bpda_forward_is_the_defense_backward_is_the_approximation(random_cnn):
    model, x, y = random_cnn
    defended = Defended(Quantize(), model)
    approx = nn.AvgPool2d(3, stride=1, padding=1)
    surrogate = bpda(defended, approx)
    assert torch.equal(surrogate(x), defended(x))
    ours = input_gradient(surrogate, x, y)
    # by hand: the classifier's gradient at g(x), pulled back through the approximation
    z = Quantize()(x).requires_grad_(True)
    (g_z,) = torch.autograd.grad(F.cross_entropy(model(z), y, reduction="sum"), z)
    xx = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad((approx(xx) * g_z).sum(), xx)
    assert torch.allclose(ours, expected, atol=1e-6)
    identity = input_gradient(bpda(defended), x, y)
    assert torch.allclose(identity, g_z, atol=1e-6)  # identity BPDA: the gradient at g(x)
    assert input_gradient(defended, x, y).abs().max() == 0  # what a naive attacker sees


def test_eot_gradient_is_the_mean_of_single_draw_gradients():
    torch.manual_seed(0)
    classifier = small_cnn(1, 10, 32).eval()
    x = torch.rand(4, 1, 28, 28)
    v = torch.randn(4, 10)

    generator = torch.Generator()
    defended = Defended(RandomResizePad(28, 32, generator), classifier)
    k = 5

    def grad_of_probabilities(model):
        xx = x.clone().requires_grad_(True)
        return torch.autograd.grad((model(xx).softmax(1) * v).sum(), xx)[0]

    generator.manual_seed(7)
    ours = grad_of_probabilities(eot(defended, k))  # softmax(log p_bar) = p_bar
    generator.manual_seed(7)
    singles = [grad_of_probabilities(defended) for _ in range(k)]  # the same k draws, one by one
    assert torch.allclose(ours, torch.stack(singles).mean(0), atol=1e-6)
    assert not torch.allclose(singles[0], singles[1])  # the draws differ


def test_eot_batched_draws_do_not_depend_on_the_call_size(monkeypatch):
    torch.manual_seed(0)
    classifier = small_cnn(1, 10, 32).eval()
    x = torch.rand(4, 1, 28, 28)
    generator = torch.Generator()
    defended = Defended(RandomResizePad(28, 32, generator), classifier)
    generator.manual_seed(3)
    whole = eot(defended, 6)(x)  # the 6 draws in one call
    monkeypatch.setattr(adaptive, "EOT_BATCH", 8)  # 2 draws of 4 images per call
    generator.manual_seed(3)
    split = eot(defended, 6)(x)
    assert torch.allclose(whole, split, atol=1e-6)
    # the draws are per image: copies of one digit in one call get different transforms
    one = x[:1].repeat(6, 1, 1, 1)
    assert not torch.allclose(defended.transform(one)[0], defended.transform(one)[1])


def test_eot_climbs_the_loss_of_the_averaged_classifier():
    """-log mean_j p_y(t_j) <= mean_j -log p_y(t_j) (Jensen): the EOT loss is the smaller one."""
    torch.manual_seed(0)
    classifier = small_cnn(1, 10, 32).eval()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(10, (8,))
    generator = torch.Generator()
    defended = Defended(RandomResizePad(28, 32, generator), classifier)
    generator.manual_seed(5)
    ours = F.nll_loss(eot(defended, 4)(x), y, reduction="none")  # (B,)
    generator.manual_seed(5)
    mean_loss = torch.stack(
        [F.cross_entropy(defended(x), y, reduction="none") for _ in range(4)]
    ).mean(0)
    assert (ours <= mean_loss + 1e-6).all() and (ours < mean_loss - 1e-6).any()


def test_eot_of_a_deterministic_model_is_the_model(random_cnn):
    model, x, y = random_cnn
    assert torch.allclose(eot(model, 3)(x), F.log_softmax(model(x), 1), atol=1e-5)
    with pytest.raises(ValueError, match="samples"):
        eot(model, 0)
    with pytest.raises(ValueError, match="defended"):
        bpda(model)


def test_bpda_breaks_pixel_deflection(mnist_model, mnist):
    """Design test of the chapter: a naive PGD through the shattered defense does nothing, BPDA
    brings accuracy down to that of the undefended model."""
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    torch.manual_seed(0)
    defended = Defended(PixelDeflection(20, 2, 0.04), mnist_model)
    attack = lambda m, a, b: pgd(m, a, b, 0.2, steps=10)  # noqa: E731
    naive = robust_accuracy(defended, x, y, attack)
    adaptive = robust_accuracy(defended, x, y, lambda m, a, b: attack(bpda(m), a, b))
    undefended = robust_accuracy(mnist_model, x, y, attack)
    assert naive > 0.8 and adaptive <= undefended + 0.1
