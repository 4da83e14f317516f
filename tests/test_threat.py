import pytest
import torch

from course_lib.threat import THREATS, perturbation_norm, project_l2, project_linf


@pytest.mark.parametrize("seed", range(5))
def test_l2_projection_is_the_nearest_point_of_the_ball(seed):
    torch.manual_seed(seed)
    x = torch.rand(64, 3, 4, 4)  # clean points anywhere in the box, edges included
    x[:8] = 0.0
    x[8:16] = 1.0
    eps = 0.7
    scale = torch.linspace(0.02, 0.6, 64).view(-1, 1, 1, 1)  # short and long perturbations
    x_adv = (x + scale * torch.randn_like(x)).clamp(0, 1)
    delta = (x_adv - x).flatten(1)
    norms = delta.norm(dim=1)
    assert (norms < eps).any() and (norms > eps).any()  # both branches are exercised
    d_p = (project_l2(x_adv, x, eps) - x).flatten(1)
    # closed form: unchanged inside the ball, rescaled onto the sphere outside
    expected = torch.where((norms <= eps)[:, None], delta, delta * (eps / norms)[:, None])
    torch.testing.assert_close(d_p, expected)
    # nearest point: no random point of the ball is closer to x_adv
    for _ in range(50):
        q = torch.randn_like(delta)
        q = q / q.norm(dim=1, keepdim=True) * eps * torch.rand(64, 1)
        assert ((delta - q).norm(dim=1) >= (delta - d_p).norm(dim=1) - 1e-6).all()


def test_l2_projection_of_points_outside_the_box_lands_in_both():
    torch.manual_seed(0)
    x = torch.rand(32, 1, 6, 6)
    x_adv = x + 0.5 * torch.randn_like(x)  # a gradient step may leave [0, 1]
    p = project_l2(x_adv, x, 0.5)
    assert p.min() >= 0 and p.max() <= 1
    assert ((p - x).flatten(1).norm(dim=1) <= 0.5 + 1e-6).all()
    # it is the ball projection followed by the box clip
    delta = (x_adv - x).flatten(1)
    scaled = delta * torch.clamp(0.5 / delta.norm(dim=1, keepdim=True), max=1)
    torch.testing.assert_close(p, (x + scaled.view_as(x)).clamp(0, 1))


def test_linf_projection_clips_to_ball_and_box():
    x = torch.tensor([[0.0, 0.5, 1.0, 0.95]])
    x_adv = torch.tensor([[-0.3, 0.9, 0.8, 1.2]])
    p = project_linf(x_adv, x, eps=0.1)
    torch.testing.assert_close(p, torch.tensor([[0.0, 0.6, 0.9, 1.0]]))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_lies_in_ball_and_box(norm):
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    for eps in [0.01, 0.3, 2.0]:
        x0 = THREATS[norm].random_start(x, eps)
        assert (perturbation_norm(x0, x, norm) <= eps + 1e-6).all()
        assert x0.min() >= 0 and x0.max() <= 1


def test_steps_have_the_requested_length():
    g = torch.randn(10, 3, 5, 5)
    assert torch.allclose(THREATS["l2"].step(g, 0.5).flatten(1).norm(dim=1), torch.tensor(0.5))
    assert torch.allclose(THREATS["linf"].step(g, 0.5).abs(), torch.tensor(0.5))


def test_l2_random_start_fills_the_ball_uniformly():
    # uniform in a d-ball: P(||delta|| <= r * eps) = r^d; with d=2 the median radius is 1/sqrt(2)
    torch.manual_seed(0)
    x = torch.full((20000, 2), 0.5)
    r = perturbation_norm(THREATS["l2"].random_start(x, 0.2), x, "l2") / 0.2
    assert abs(r.median().item() - 2**-0.5) < 0.02


def test_l2_random_start_takes_one_radius_per_sample():
    torch.manual_seed(0)
    x = torch.full((4000, 2), 0.5)
    eps = torch.tensor([0.0, 0.05, 0.1, 0.2]).repeat(1000).view(-1, 1)  # (B, 1)
    r = perturbation_norm(THREATS["l2"].random_start(x, eps), x, "l2")
    assert (r <= eps[:, 0] + 1e-6).all() and (r[::4] == 0).all()
    for i, e in enumerate([0.05, 0.1, 0.2], start=1):  # each sample fills its own ball
        assert abs((r[i::4] / e).median().item() - 2**-0.5) < 0.05
