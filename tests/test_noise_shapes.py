"""Uniform and Laplace smoothing (Yang et al. 2020) certify l1 radii. For a linear classifier the
smoothed classifier equals the base one, so its true l1 robust radius is |w.x + b| / ||w||_inf:
the certificates must stay below it (up to the alpha failure rate) and, for an axis-aligned w
where they are exact, approach it as n grows."""

import math

import pytest
import torch

from course_lib.certify.noise_shapes import SmoothLaplaceL1, SmoothUniformL1
from course_lib.certify.smoothing import Smooth

SHAPES = {"uniform": SmoothUniformL1, "laplace": SmoothLaplaceL1}


class Linear(torch.nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = torch.as_tensor(w, dtype=torch.float32), float(b)

    def forward(self, x):
        z = x @ self.w + self.b
        return torch.stack([-z, z], 1)


def _l1_distance(x, w, b):
    w = torch.as_tensor(w)
    return abs(float(x @ w + b)) / float(w.abs().max())


def test_noise_samples_have_the_stated_law():
    torch.manual_seed(0)
    lam = 0.3
    u = SmoothUniformL1(Linear([1.0], 0), 2, lam).sample_noise((200_000,), torch.device("cpu"))
    assert u.abs().max() <= lam and u.std().item() == pytest.approx(lam / math.sqrt(3), rel=0.01)
    smooth = SmoothLaplaceL1(Linear([1.0], 0), 2, lam)
    e = smooth.sample_noise((200_000,), torch.device("cpu"))
    assert e.abs().mean().item() == pytest.approx(lam, rel=0.01)  # E|eps| = lambda
    assert e.std().item() == pytest.approx(smooth.sigma, rel=0.02)  # sigma = sqrt(2) lambda
    assert e.mean().abs().item() < 0.01


@pytest.mark.parametrize("shape", SHAPES)
def test_l1_certificate_of_an_axis_aligned_linear_classifier_is_sound_and_tight(shape):
    torch.manual_seed(0)
    w, b, lam, alpha = [1.0, 0.0, 0.0], -0.4, 0.3, 0.01
    smooth = SHAPES[shape](Linear(w, b), 2, lam)
    x = torch.tensor([0.55, 0.2, 0.9])
    dist = _l1_distance(x, w, b)  # 0.15
    runs = x.expand(4000, -1).contiguous()
    classes, radii = smooth.certify_batch(runs, n0=50, n=1000, alpha=alpha, batch_size=400_000)
    assert (classes != 0).all()
    assert (radii > dist).float().mean().item() <= alpha + 3 * math.sqrt(alpha / 4000)
    _, r_large = smooth.certify(x, n0=100, n=200_000, alpha=alpha, batch_size=200_000)
    assert 0.95 * dist <= r_large <= dist * 1.001


@pytest.mark.parametrize("shape", SHAPES)
def test_l1_certificate_never_exceeds_the_distance_for_an_oblique_plane(shape):
    torch.manual_seed(1)
    w, b = [0.5, -1.0, 0.25], 0.3
    smooth = SHAPES[shape](Linear(w, b), 2, 0.2)
    x = torch.rand(64, 3)
    classes, radii = smooth.certify_batch(x, n0=100, n=20_000, alpha=0.001, batch_size=400_000)
    dist = torch.tensor([_l1_distance(xi, w, b) for xi in x])
    truth = ((x @ torch.tensor(w) + b) > 0).long()
    assert ((classes == truth) | (classes == -1)).all()
    assert (radii <= dist + 1e-6).float().mean() >= 0.98  # alpha = 0.001 per point


def test_same_variance_noises_give_different_radii():
    """The certificate depends on the pair (noise, norm). At equal sigma, uniform noise certifies
    the larger l1 radius for moderate p_A (0.75) and Laplace for p_A near 1 (0.99): uniform
    radii are capped at lambda = sqrt(3) sigma."""
    sigma = 0.5
    uniform = SmoothUniformL1(Linear([1.0], 0), 2, lam=sigma * math.sqrt(3))
    laplace = SmoothLaplaceL1(Linear([1.0], 0), 2, lam=sigma / math.sqrt(2))
    gauss = Smooth(Linear([1.0], 0), 2, sigma)
    assert uniform.sigma == pytest.approx(sigma) and laplace.sigma == pytest.approx(sigma)
    p = torch.tensor([0.75, 0.99], dtype=torch.float64)
    r_u, r_l, r_g = (s.radius(p) for s in (uniform, laplace, gauss))
    assert r_u.tolist() == pytest.approx([2 * sigma * math.sqrt(3) * q for q in (0.25, 0.49)])
    assert r_l.tolist() == pytest.approx(
        [-sigma / math.sqrt(2) * math.log(2 * (1 - q)) for q in (0.75, 0.99)]
    )
    assert r_u[0] > r_l[0] and r_u[1] < r_l[1]
    assert r_g.tolist() == pytest.approx([sigma * 0.6744898, sigma * 2.3263479], rel=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_noise_shapes_reject_bad_lambda(shape):
    for lam in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="^lam "):
            SHAPES[shape](Linear([1.0], 0), 2, lam)


@pytest.mark.parametrize("lam", [0.05, 0.3])
def test_uniform_radius_never_exceeds_lambda(lam):
    """By construction (2 lam (p - 1/2) <= lam): moved here from notebook 5.1's check cell."""
    p = torch.linspace(0.5, 1.0, 1001, dtype=torch.float64)
    radii = SmoothUniformL1(Linear([1.0], 0), 2, lam).radius(p)
    assert (radii <= lam + 1e-12).all() and radii[-1] == pytest.approx(lam)
