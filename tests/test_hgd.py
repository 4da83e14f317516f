"""High-level representation guided denoiser (Liao et al. 2018): loss, frozen classifier, HGD."""

import pytest
import torch

from course_lib.attacks import input_gradient
from course_lib.defenses import Defended
from course_lib.defenses.hgd import GUIDES, HGD, UNetDenoiser, guide_representation, hgd_loss
from course_lib.models import small_cnn

LAYER = "4"  # small_cnn: the ReLU after the second convolution


@pytest.fixture
def setup():
    torch.manual_seed(0)
    classifier = small_cnn().eval()
    g = HGD(UNetDenoiser(1))
    x = torch.rand(6, 1, 28, 28)
    x_adv = (x + 0.1 * torch.randn_like(x).sign()).clamp(0, 1)
    return g, classifier, x, x_adv


def direct_representation(classifier, z, guide):
    """f_l(z) computed by hand: the image, the Sequential up to layer 4, or all of it."""
    if guide == "pixel":
        return z
    if guide == "feature":
        return classifier[: int(LAYER) + 1](z)
    return classifier(z)


@pytest.mark.parametrize("guide", GUIDES)
def test_loss_equals_direct_computation(setup, guide):
    g, classifier, x, x_adv = setup
    loss = hgd_loss(g, classifier, x, x_adv, guide, LAYER if guide == "feature" else None)
    x_hat = x_adv - g.D(x_adv)  # the paper's x^ = x* - D(x*)
    f_hat = direct_representation(classifier, x_hat, guide)
    f_x = direct_representation(classifier, x, guide)
    expected = (f_hat - f_x).abs().sum() / f_hat.numel()  # mean |f_l(x^) - f_l(x)|
    torch.testing.assert_close(loss, expected)
    if guide == "feature":
        assert f_hat.shape == (6, 32, 7, 7)


@pytest.mark.parametrize("guide", GUIDES)
def test_training_step_leaves_classifier_untouched(setup, guide):
    g, classifier, x, x_adv = setup
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    flags = [p.requires_grad for p in classifier.parameters()]
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    g.train()
    loss = hgd_loss(g, classifier, x, x_adv, guide, LAYER if guide == "feature" else None)
    opt.zero_grad()
    loss.backward()
    opt.step()
    for k, v in classifier.state_dict().items():
        assert torch.equal(v, before[k]), k  # bit-identical
    assert all(p.grad is None for p in classifier.parameters())
    assert [p.requires_grad for p in classifier.parameters()] == flags  # no flag flipped
    assert not classifier.training  # its mode left alone
    assert all(p.grad is not None for p in g.parameters())  # the denoiser does learn
    assert g.D.final.bias is None  # 1x1 output convolution without bias, as in the reference


def test_transform_keeps_shape_device_and_is_differentiable(setup):
    g, classifier, x, _ = setup
    out = g(x)
    assert out.shape == x.shape and out.device == x.device and out.dtype == x.dtype
    torch.testing.assert_close(out, x - g.D(x))  # not clamped
    odd = torch.rand(3, 1, 15, 15)  # odd sides: the up-sampling follows the skip's size
    assert g(odd).shape == odd.shape
    grad = input_gradient(Defended(g, classifier), x, torch.zeros(6, dtype=torch.long))
    assert grad.abs().sum() > 0  # an ordinary differentiable network: no shattered gradient


def test_zero_denoiser_is_identity(setup):
    g, classifier, x, x_adv = setup
    torch.nn.init.zeros_(g.D.final.weight)
    assert torch.equal(g(x_adv), x_adv)
    for guide in GUIDES:  # then every loss compares f_l(x*) with f_l(x)
        f = guide_representation(classifier, x_adv, guide, LAYER)
        target = guide_representation(classifier, x, guide, LAYER)
        loss = hgd_loss(g, classifier, x, x_adv, guide, LAYER)
        torch.testing.assert_close(loss, (f - target).abs().mean())


def test_bad_input_raises(setup):
    g, classifier, x, x_adv = setup
    with pytest.raises(ValueError, match="guide"):
        hgd_loss(g, classifier, x, x_adv, "cross-entropy")
    with pytest.raises(ValueError, match="layer"):
        hgd_loss(g, classifier, x, x_adv, "feature")
    with pytest.raises(ValueError, match="layer"):
        hgd_loss(g, classifier, x, x_adv, "feature", "no_such_layer")
    with pytest.raises(ValueError, match="^x_adv must have the shape"):
        hgd_loss(g, classifier, x, x_adv[:3])
    with pytest.raises(ValueError, match="^x_adv must hold pixels"):
        hgd_loss(g, classifier, x, x_adv + 2)
    with pytest.raises(ValueError, match="^x must hold pixels"):
        hgd_loss(g, classifier, x - 1, x_adv)
    with pytest.raises(ValueError, match="^x must hold pixels"):
        g(x * 255)
    with pytest.raises(ValueError, match="^classifier must be in eval mode"):
        hgd_loss(g, classifier.train(), x, x_adv)
