"""Masked TV minimization (Guo et al. 2018): the solver, the mask and the transform."""

from itertools import islice

import numpy as np
import pytest
import torch
from skimage.restoration import denoise_tv_chambolle

from course_lib.attacks import input_gradient
from course_lib.defenses import Defended
from course_lib.defenses.tv import (
    TVMinimization,
    pixel_dropout_mask,
    tv_iterates,
    tv_minimize,
    tv_objective,
)
from course_lib.models import small_cnn


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.x_test[:64].double()


def test_weight_zero_returns_input_on_kept_pixels(digits):
    mask = pixel_dropout_mask(digits, 0.5, torch.Generator().manual_seed(0))
    for weight in (0.0, 1e-7):
        z = tv_minimize(digits, mask, weight, iters=5)
        assert torch.allclose(z * mask, digits * mask, atol=1e-5)


@pytest.mark.parametrize("weight", [0.03, 0.1])
def test_objective_monotone_and_converged_within_one_percent(digits, weight):
    mask = pixel_dropout_mask(digits, 0.5, torch.Generator().manual_seed(1))
    f0 = tv_objective(mask * digits, digits, mask, weight)
    objectives = [f.clone() for _, f in islice(tv_iterates(digits, mask, weight), 1000)]
    f = torch.stack(objectives)  # (iters, B)
    assert (f[1:] <= f[:-1]).all() and (f[0] <= f0).all()  # monotone from the start
    gap = (f[99] - f[999]) / f[999]  # 100 iterations versus 10x more
    assert gap.max() < 0.01
    z100 = tv_minimize(digits, mask, weight, iters=100)
    assert torch.allclose(tv_objective(z100, digits, mask, weight), f[99])


def test_full_mask_matches_skimage_chambolle(digits):
    """With every pixel kept, the problem is ROF denoising: our objective is no worse than at
    scikit-image's Chambolle solution (same objective, evaluated by us)."""
    x, weight = digits[:8], 0.1
    mask = torch.ones_like(x)
    ours = tv_objective(tv_minimize(x, mask, weight, 300), x, mask, weight)
    theirs_img = np.stack(
        [denoise_tv_chambolle(im[0].numpy(), weight=weight, max_num_iter=500) for im in x]
    )
    theirs = tv_objective(torch.from_numpy(theirs_img)[:, None], x, mask, weight)
    assert (ours <= theirs * (1 + 1e-3)).all()
    assert ((theirs - ours) / theirs).max() < 0.05  # and the two solvers agree


def test_drop_rate_within_three_standard_errors():
    x = torch.rand(64, 1, 28, 28)
    for p in (0.1, 0.5, 0.9):
        mask = pixel_dropout_mask(x, p, torch.Generator().manual_seed(2))
        n = mask.numel()
        assert abs((1 - mask.mean().item()) - p) < 3 * (p * (1 - p) / n) ** 0.5
    assert pixel_dropout_mask(x, 0.0).eq(1).all()


def test_transform_is_random_shaped_and_shattered(digits):
    x = digits[:8].float()
    tv = TVMinimization(0.5, 0.03, 20, generator=torch.Generator().manual_seed(0))
    a, b = tv(x), tv(x)
    assert a.shape == x.shape and not torch.equal(a, b)  # a fresh mask per call
    model = Defended(tv, small_cnn().eval())
    grad = input_gradient(model, x, torch.zeros(8, dtype=torch.long))
    assert torch.equal(grad, torch.zeros_like(x))  # a black box to autograd


def test_bad_input_raises():
    x = torch.rand(2, 1, 8, 8)
    m = torch.ones_like(x)
    with pytest.raises(ValueError, match="drop_prob"):
        pixel_dropout_mask(x, 1.0)
    with pytest.raises(ValueError, match="drop_prob"):
        TVMinimization(drop_prob=-0.1)
    with pytest.raises(ValueError, match="weight"):
        tv_minimize(x, m, -1.0, 10)
    with pytest.raises(ValueError, match="iters"):
        tv_minimize(x, m, 0.1, 0)
    with pytest.raises(ValueError, match="x"):
        tv_minimize(x + 1, m, 0.1, 10)
    with pytest.raises(ValueError, match="mask"):
        tv_minimize(x, m[:1], 0.1, 10)
    with pytest.raises(ValueError, match="z"):
        tv_objective(x[:1], x, m, 0.1)
