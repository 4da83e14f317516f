"""Lipschitz constants and margin certificates: closed forms, bound orderings, soundness."""

import math

import pytest
import torch
from torch import nn

from course_lib.config import seed_everything
from course_lib.data import TensorLoader, load_toy2d
from course_lib.lipschitz import (
    jacobian_spectral_norm,
    jacobian_spectral_norm_power,
    lipschitz_lower_bound,
    margin_radius,
    margin_radius_pairwise,
    margin_radius_per_logit,
    secant_slopes,
)
from course_lib.lipschitz.attacks import pgd_l2_per_sample, smallest_adversarial_l2
from course_lib.lipschitz.bounds import (
    lipschitz_upper_bound,
    lipschitz_upper_bound_pairwise,
    lipschitz_upper_bound_per_logit,
)
from course_lib.models import Normalize, mlp
from course_lib.train import fit, predict


def random_net(seed: int) -> nn.Sequential:
    """A random feed-forward net on inputs ``(B, 1, 1, 3)``: 1-3 hidden layers, ReLU or Tanh,
    sometimes a Normalize first."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    depth = int(torch.randint(1, 4, (1,), generator=gen))
    widths = [3] + [int(w) for w in torch.randint(4, 24, (depth,), generator=gen)]
    act = nn.ReLU if seed % 2 else nn.Tanh
    layers: list[nn.Module] = [Normalize((0.5,), (0.3,))] if seed % 3 == 0 else []
    layers.append(nn.Flatten())
    for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(w_in, w_out), act()]
    layers.append(nn.Linear(widths[-1], 4))
    return nn.Sequential(*layers).eval()


@pytest.fixture(scope="module")
def toy_model():
    """A 2-16-16-2 ReLU net trained on moons (about a second), and held-out points."""
    seed_everything(0)
    x, y = load_toy2d("moons", n=400, noise=0.15, seed=0)
    model = mlp(2, (16, 16), 2)
    fit(model, TensorLoader(x, y, batch_size=64), epochs=30, lr=1e-2)
    x_test, _ = load_toy2d("moons", n=200, noise=0.15, seed=1)
    return model.eval(), x_test


# ----- local constants -----------------------------------------------------------------------


def test_linear_map_norm_is_the_matrix_2_norm():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    exact = torch.linalg.matrix_norm(layer.weight.detach(), 2)
    x = torch.rand(7, 5)
    torch.testing.assert_close(jacobian_spectral_norm(layer, x), exact.expand(7))
    torch.testing.assert_close(jacobian_spectral_norm_power(layer, x, iters=200), exact.expand(7))
    assert lipschitz_upper_bound(nn.Sequential(layer)) == pytest.approx(float(exact), rel=1e-6)
    lower, point = lipschitz_lower_bound(nn.Sequential(layer), x)
    assert lower == pytest.approx(float(exact), rel=1e-5) and point.shape == (5,)


def test_batched_norm_equals_per_sample_autograd_jacobian():
    model = random_net(3)  # with a Normalize layer
    x = torch.rand(6, 1, 1, 3)
    batched = jacobian_spectral_norm(model, x)
    for i in range(6):  # the reference: one full Jacobian per sample
        J = torch.autograd.functional.jacobian(lambda xi: model(xi[None])[0], x[i])  # (4, 1, 1, 3)
        torch.testing.assert_close(batched[i], torch.linalg.matrix_norm(J.view(4, 3), 2))
        torch.testing.assert_close(batched[i : i + 1], jacobian_spectral_norm(model, x[i : i + 1]))


def test_image_shaped_inputs_and_power_iteration_from_below():
    torch.manual_seed(0)
    model = nn.Sequential(Normalize((0.1,), (0.3,)), mlp(64, (32,), 10)).eval()
    x = torch.rand(5, 1, 8, 8)
    exact = jacobian_spectral_norm(model, x)
    assert exact.shape == (5,)
    for iters in (1, 5, 300):
        power = jacobian_spectral_norm_power(model, x, iters=iters)
        assert (power <= exact * (1 + 1e-5)).all()  # a Rayleigh quotient never overshoots
    torch.testing.assert_close(power, exact, rtol=1e-4, atol=0)


def test_secant_slopes_of_closed_forms():
    slopes = secant_slopes(lambda x: 2 * x + 1, -3.0, 5.0, 50)
    assert slopes.shape == (50 * 49 // 2,)
    assert (slopes - 2).abs().max() < 1e-12
    # sqrt on [0, h], grid step s = h / (n - 1): the steepest secant joins 0 and s, slope
    # sqrt(s) / s = 1 / sqrt(s): unbounded as the interval (or the grid step) shrinks
    for h in (1.0, 1e-2, 1e-4):
        assert secant_slopes(torch.sqrt, 0.0, h, 100).max() == pytest.approx((h / 99) ** -0.5)


# ----- bounds --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(24))
def test_lower_bound_below_upper_bound_on_random_nets(seed):
    model = random_net(seed)
    x = torch.rand(64, 1, 1, 3)
    upper = lipschitz_upper_bound(model)
    lower, point = lipschitz_lower_bound(model, x, steps=10)
    assert 0 < lower <= upper * (1 + 1e-6)
    assert 0 <= point.min() and point.max() <= 1  # found inside the pixel box
    # the bound holds for every pair of points, not only for local slopes
    x2 = torch.rand(64, 1, 1, 3) * 4 - 2
    with torch.no_grad():
        change = (model(x) - model(x2)).norm(dim=1)
    assert (change <= upper * (x - x2).flatten(1).norm(dim=1) * (1 + 1e-5)).all()


class Ramp(nn.Module):
    """A 1-D map flat everywhere except a ramp of slope 100 on [c, c + 0.001]."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return 100 * (torch.relu(x - self.c) - torch.relu(x - self.c - 0.001))


def test_lower_bound_keeps_the_difference_quotient_when_the_probes_miss_the_ramp():
    # steps=0: the pair is (x, x + alpha * noise) drawn with the seed; put the ramp between the
    # 2nd and 3rd of the 9 probes, where no probe sees it, and the quotient is the only witness
    x, alpha = torch.tensor([[0.5]]), 0.02
    noise = torch.randn((1, 1), generator=torch.Generator().manual_seed(0))
    b = (x + alpha * noise).clamp(0, 1)
    lo, hi = min(x.item(), b.item()), max(x.item(), b.item())
    model = Ramp(lo + (hi - lo) * 1.5 / 8)
    lower, where = lipschitz_lower_bound(model, x, steps=0, alpha=alpha)
    q = 0.1 / (hi - lo)  # the ramp rises by 0.1 between the two points
    assert lower == pytest.approx(q, rel=1e-4) and 0 < lower <= 100
    assert lo <= where.item() <= hi


# ----- by construction: the local constant never exceeds the product bound -------------------


@pytest.mark.parametrize("seed", range(6))
def test_every_local_constant_on_a_grid_is_below_the_product_bound(seed):
    model = random_net(seed)
    grid = torch.rand(4096, 1, 1, 3, generator=torch.Generator().manual_seed(seed))
    assert jacobian_spectral_norm(model, grid).max() <= lipschitz_upper_bound(model) * (1 + 1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_per_logit_and_pairwise_bounds_are_smaller(seed):
    model = random_net(seed)
    L = lipschitz_upper_bound(model)
    L_j = lipschitz_upper_bound_per_logit(model)  # (4,)
    L_ji = lipschitz_upper_bound_pairwise(model)  # (4, 4)
    assert L_j.shape == (4,) and L_ji.shape == (4, 4)
    assert (L_j <= L * (1 + 1e-9)).all()
    assert (L_ji <= L_j[:, None] + L_j[None, :] + 1e-9).all()  # triangle inequality
    assert (L_ji <= math.sqrt(2) * L * (1 + 1e-9)).all()
    # each logit really is L_j-Lipschitz: check on random pairs
    x, x2 = torch.rand(256, 1, 1, 3), torch.rand(256, 1, 1, 3)
    with torch.no_grad():
        change = (model(x) - model(x2)).abs()  # (256, 4)
    distance = (x - x2).flatten(1).norm(dim=1, keepdim=True)  # (256, 1)
    assert (change <= L_j.float() * distance * (1 + 1e-5)).all()


def test_normalize_contributes_one_over_std():
    model = nn.Sequential(Normalize((0.5, 0.5), (0.25, 0.5)), nn.Flatten(), nn.Identity())
    assert lipschitz_upper_bound(model) == pytest.approx(4.0)
    nested = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 2))
    layers = [nested[0][0], nested[1]]
    expected = math.prod(float(torch.linalg.svdvals(m.weight.detach().double())[0]) for m in layers)
    assert lipschitz_upper_bound(nested) == pytest.approx(expected)


# ----- certified radii -----------------------------------------------------------------------


def test_margin_radius_closed_forms():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    radius = margin_radius(logits, 2.0)
    torch.testing.assert_close(radius, torch.tensor([2 / (math.sqrt(2) * 2), 0.0]))  # tie: 0
    per_logit = margin_radius_per_logit(logits, torch.full((3,), 2.0))
    torch.testing.assert_close(per_logit, torch.tensor([2 / (2 * 2), 0.0]))  # margin / (2L)


def test_pairwise_radius_is_the_exact_distance_for_a_linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2)).eval()
    x = torch.rand(50, 2)
    with torch.no_grad():
        logits = model(x)
    w, b = model[0].weight.detach(), model[0].bias.detach()
    distance = ((w[0] - w[1]) @ x.T + b[0] - b[1]).abs() / (w[0] - w[1]).norm()  # to the boundary
    radius = margin_radius_pairwise(logits, lipschitz_upper_bound_pairwise(model))
    torch.testing.assert_close(radius, distance, rtol=1e-5, atol=1e-6)
    assert (margin_radius(logits, lipschitz_upper_bound(model)) <= radius * (1 + 1e-6)).all()


def test_smallest_adversarial_brackets_the_exact_distance_of_a_linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.5], [-1.0, -0.5]]))
        model[0].bias.copy_(torch.tensor([-0.75, 0.75]))  # boundary x1 + x2 / 2 = 0.75
    x = torch.rand(40, 2) * 0.5 + 0.25
    y = predict(model, x)
    exact = (x @ torch.tensor([1.0, 0.5]) - 0.75).abs() / math.sqrt(1.25)
    found = smallest_adversarial_l2(model, x, y, eps_max=1.0, steps=10, search_steps=10)
    assert (found >= exact * (1 - 1e-5)).all()  # a real adversarial example: never closer
    # the search's resolution 2^-10, and PGD-10 ends a little off the boundary's normal
    assert (found <= exact * 1.05 + 1.0 / 2**10).all()


@pytest.mark.parametrize("certificate", ["global", "per_logit", "pairwise"])
def test_no_attack_flips_a_prediction_inside_the_certified_radius(toy_model, certificate):
    model, x = toy_model
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)  # a certificate is about the prediction, not the label
    radius = {
        "global": lambda: margin_radius(logits, lipschitz_upper_bound(model)),
        "per_logit": lambda: margin_radius_per_logit(
            logits, lipschitz_upper_bound_per_logit(model)
        ),
        "pairwise": lambda: margin_radius_pairwise(logits, lipschitz_upper_bound_pairwise(model)),
    }[certificate]()
    assert (radius > 0).float().mean() > 0.9
    torch.manual_seed(0)
    x_adv = pgd_l2_per_sample(model, x, y, radius * (1 - 1e-4), steps=50, restarts=20)
    assert ((x_adv - x).norm(dim=1) <= radius + 1e-6).all()  # float32 resolution near 0.5
    assert (predict(model, x_adv) == y).all()
    # the attack is not toothless: at 5x the radius it flips some predictions
    x_far = pgd_l2_per_sample(model, x, y, radius * 5, steps=50, restarts=2)
    assert (predict(model, x_far) != y).any()


# ----- bad input -----------------------------------------------------------------------------


def test_bad_input_raises_value_errors_naming_the_problem():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="x must be a non-empty batch"):
        jacobian_spectral_norm(model, torch.empty(0, 3))
    with pytest.raises(ValueError, match="x must hold finite values"):
        jacobian_spectral_norm(model, torch.tensor([[0.1, float("nan"), 0.2]]))
    with pytest.raises(ValueError, match="iters must be an integer >= 1"):
        jacobian_spectral_norm_power(model, torch.rand(2, 3), iters=0)
    with pytest.raises(ValueError, match=r"x must hold pixels in \[0, 1\]"):
        lipschitz_lower_bound(model, torch.rand(2, 3) + 1)
    logits = torch.tensor([[1.0, 0.0]])
    for L in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="L must be a finite number > 0"):
            margin_radius(logits, L)
    with pytest.raises(ValueError, match="logits must be a non-empty batch"):
        margin_radius(torch.empty(0, 2), 1.0)
    with pytest.raises(ValueError, match="logits must hold finite values"):
        margin_radius(torch.tensor([[float("inf"), 0.0]]), 1.0)
    with pytest.raises(ValueError, match=r"logits must have shape \(B, K\) with K >= 2"):
        margin_radius(torch.ones(3, 1), 1.0)
    with pytest.raises(ValueError, match=r"L must be a tensor of shape \(2,\)"):
        margin_radius_per_logit(logits, torch.ones(3))
    with pytest.raises(ValueError, match="L must hold finite Lipschitz bounds > 0"):
        margin_radius_pairwise(logits, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="a < b"):
        secant_slopes(torch.sqrt, 1.0, 0.0)
    with pytest.raises(ValueError, match="eps must hold finite radii >= 0"):
        pgd_l2_per_sample(model, torch.rand(2, 3), torch.tensor([0, 1]), torch.tensor([0.1, -1]))


def test_unsupported_layers_are_named():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2d\) is not supported"):
        lipschitz_upper_bound(conv)
    gelu = nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"layer 1 \(GELU\) is not supported"):
        lipschitz_upper_bound_per_logit(gelu)
    with pytest.raises(ValueError, match="model must be an nn.Sequential"):
        lipschitz_upper_bound(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="must end with an nn.Linear"):
        lipschitz_upper_bound_pairwise(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
