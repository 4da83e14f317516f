"""Random resize-and-pad (Xie et al. 2018) and random pixel masking."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.defenses.randomization import RandomPixelMask, RandomResizePad, random_resize_pad


def test_shape_and_unpadded_crop_equals_resized_input(mnist):
    x = mnist.x_test[:32]
    out, side, offset = random_resize_pad(x, 28, 32, torch.Generator().manual_seed(0))
    assert out.shape == (32, 1, 32, 32)
    assert side.min() >= 28 and side.max() < 32 and len(set(side.tolist())) > 1
    for i in range(32):
        s, (t, l) = int(side[i]), offset[i].tolist()
        resized = F.interpolate(x[i : i + 1], size=(s, s), mode="nearest")[0]
        assert torch.equal(out[i, :, t : t + s, l : l + s], resized)
        pad = out[i].clone()
        pad[:, t : t + s, l : l + s] = 0
        assert pad.eq(0).all()  # zero padding everywhere else


def test_fresh_draws_and_gradient_flows():
    x = torch.rand(16, 1, 28, 28, requires_grad=True)
    t = RandomResizePad(28, 32, generator=torch.Generator().manual_seed(0))
    a, b = t(x), t(x)
    assert not torch.equal(a, b)
    a.sum().backward()
    assert x.grad.abs().sum() > 0  # a gather: autograd passes the drawn transform's gradient


def test_pixel_mask_zeroes_about_drop_prob():
    x = torch.full((64, 1, 28, 28), 0.5)
    out = RandomPixelMask(0.3, torch.Generator().manual_seed(0))(x)
    frac = out.eq(0).float().mean().item()
    assert abs(frac - 0.3) < 3 * (0.3 * 0.7 / out.numel()) ** 0.5
    assert set(out.unique().tolist()) <= {0.0, 0.5}


def test_bad_input_raises():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="max_size"):
        random_resize_pad(x, 8, 8)
    with pytest.raises(ValueError, match="max_size"):
        RandomResizePad(10, 9)
    with pytest.raises(ValueError, match="x"):
        random_resize_pad(x - 1, 8, 10)
    with pytest.raises(ValueError, match="drop_prob"):
        RandomPixelMask(1.5)
