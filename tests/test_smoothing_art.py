"""Equivalence with a peer: on the same trained model, our CERTIFY and ART's
PyTorchRandomizedSmoothing.certify (both Cohen et al.'s algorithm) agree on the class and on
the radius within Monte-Carlo error."""

import math

import numpy as np
import pytest
import torch
from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing
from scipy.stats import norm

from course_lib.certify.smoothing import Smooth
from course_lib.certify.soft_smoothing import gaussian_augmentation_loss
from course_lib.config import seed_everything
from course_lib.data import TensorLoader, load_toy2d
from course_lib.models import mlp
from course_lib.train import fit

SIGMA, N0, N, ALPHA = 0.1, 100, 10_000, 0.001


@pytest.fixture(scope="module")
def smoothed_moons():
    seed_everything(0)
    x, y = load_toy2d("moons", n=400, noise=0.15, seed=0)
    model = mlp(2, (64, 64), 2)
    fit(model, TensorLoader(x, y, batch_size=64), gaussian_augmentation_loss(SIGMA), epochs=30)
    x_test, _ = load_toy2d("moons", n=30, noise=0.15, seed=1)
    return model.eval(), x_test


def test_certify_agrees_with_art(smoothed_moons):
    model, x = smoothed_moons
    seed_everything(1)
    ours = Smooth(model, 2, SIGMA)
    # a long run tells which points are clearly decided (p_A far from 1/2)
    votes = ours.counts(x, 100_000, batch_size=400_000)
    p_A = votes.max(1).values / 100_000
    clear = p_A > 0.6
    assert clear.sum() >= 15

    classes, radii = ours.certify_batch(x, N0, N, ALPHA, batch_size=400_000)
    art = PyTorchRandomizedSmoothing(
        model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(2,),
        nb_classes=2,
        device_type="cpu",
        sample_size=N0,
        scale=SIGMA,
        alpha=ALPHA,
    )
    np.random.seed(1)  # noqa: NPY002 (ART draws its noise from the global generator)
    art_classes, art_radii = art.certify(x.numpy(), n=N, batch_size=N)

    assert (classes[clear].numpy() == art_classes[clear.numpy()]).all()
    # compare in probability space: Phi(r / sigma) is p_A_lower; two independent estimates of
    # it differ by sqrt(2) standard errors of p_A at most a few times
    ours_p = norm.cdf(radii[clear].double().numpy() / SIGMA)
    art_p = norm.cdf(art_radii[clear.numpy()] / SIGMA)
    p = p_A[clear].double().numpy()
    tolerance = 5 * math.sqrt(2) * np.sqrt(p * (1 - p) / N) + 1e-9
    assert (np.abs(ours_p - art_p) <= tolerance).all()
    assert np.abs(ours_p - art_p).mean() < np.mean(tolerance) / 2
