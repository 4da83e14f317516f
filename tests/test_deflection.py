"""Pixel deflection and the BayesShrink Haar wavelet denoiser (Prakash et al. 2018)."""

import numpy as np
import pytest
import torch
from skimage.restoration import denoise_wavelet

from course_lib.defenses.deflection import (
    PixelDeflection,
    bayes_shrink_threshold,
    pixel_deflection,
    wavelet_denoise,
)


@pytest.mark.parametrize("deflections, window", [(10, 1), (50, 3), (200, 10)])
def test_at_most_deflections_changed_each_from_its_window(deflections, window):
    x = torch.rand(8, 3, 20, 20)
    out = pixel_deflection(x, deflections, window, generator=torch.Generator().manual_seed(0))
    changed = out != x  # (B, C, H, W)
    assert (changed.flatten(2).sum(2) <= deflections).all()
    # every changed value occurs in the original channel within `window` of the pixel
    for b, c, i, j in changed.nonzero().tolist():
        patch = x[b, c, max(i - window, 0) : i + window + 1, max(j - window, 0) : j + window + 1]
        assert (patch == out[b, c, i, j]).any()


def test_cam_of_ones_changes_nothing_and_zero_deflections_is_identity():
    x = torch.rand(4, 1, 12, 12)
    assert torch.equal(pixel_deflection(x, 30, 2, cam=torch.ones(4, 12, 12)), x)
    assert torch.equal(pixel_deflection(x, 0, 2), x)
    cam = torch.ones(4, 12, 12)
    cam[:, 5, 5] = 0  # only one pixel may be deflected
    out = pixel_deflection(x, 30, 2, cam=cam, generator=torch.Generator().manual_seed(0))
    changed = (out != x).squeeze(1)
    assert not changed[:, torch.arange(12) != 5].any() and not changed[:, :, :5].any()


@pytest.mark.parametrize("size, sigma", [(28, 0.04), (28, 0.1), (32, 0.04), (16, 0.2)])
def test_wavelet_denoiser_matches_skimage(mnist, size, sigma):
    if size == 28:
        x = mnist.x_test[:6].double()
    else:
        x = torch.rand(6, 1, size, size, generator=torch.Generator().manual_seed(0)).double()
    ours = wavelet_denoise(x, sigma)
    theirs = np.stack(
        [
            denoise_wavelet(
                im[0].numpy(),
                sigma=sigma,
                wavelet="haar",
                mode="soft",
                method="BayesShrink",
                rescale_sigma=True,
            )
            for im in x
        ]
    )
    assert np.allclose(ours[:, 0].numpy(), theirs, atol=1e-10)


def test_defense_shape_and_bad_input():
    x = torch.rand(4, 1, 28, 28)
    d = PixelDeflection(20, 3, 0.04, generator=torch.Generator().manual_seed(0))
    assert d(x).shape == x.shape and d(x).min() >= 0 and d(x).max() <= 1
    with pytest.raises(ValueError, match="window"):
        pixel_deflection(x, 10, 0)
    with pytest.raises(ValueError, match="deflections"):
        PixelDeflection(deflections=-1)
    with pytest.raises(ValueError, match="x"):
        pixel_deflection(x * 2, 10, 2)
    with pytest.raises(ValueError, match="cam"):
        pixel_deflection(x, 10, 2, cam=torch.ones(4, 27, 28))
    with pytest.raises(ValueError, match="levels"):
        wavelet_denoise(torch.rand(1, 1, 28, 28), 0.04, levels=3)
    with pytest.raises(ValueError, match="x"):
        wavelet_denoise(torch.rand(1, 28, 28), 0.04)  # not a batch (B, C, H, W)
    with pytest.raises(ValueError, match="sigma"):
        bayes_shrink_threshold(torch.rand(2, 14, 14), -0.1)
