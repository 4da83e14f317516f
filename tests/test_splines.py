"""Learnable linear splines (Ducotterd et al., 2024): 1-Lipschitz after slope clipping, linear
interpolation between knots and linear extrapolation outside, TV(2) on known coefficients,
gradients, bad input, and the soundness of certificates of a spline network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.lipschitz import margin_radius
from course_lib.lipschitz.attacks import pgd_l2_margin
from course_lib.lipschitz.splines import LinearSpline, slope_clipping, spline_lipschitz_bound
from course_lib.zoo.splines import bjorck_spline_mlp, sawtooth


def _random_spline(channels=3, knots=9, range_=1.5, scale=3.0, seed=0) -> LinearSpline:
    """A spline with wild coefficients: many raw slopes far outside [-1, 1]."""
    s = LinearSpline(channels, knots, range_, "identity").double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        s.coefficients.copy_(scale * torch.randn(channels, knots, generator=g, dtype=torch.float64))
    return s


def test_one_lipschitz_after_clipping():
    s = _random_spline()
    raw = (s.coefficients[:, 1:] - s.coefficients[:, :-1]).abs().max() / s.T
    assert raw > 2  # the raw coefficients are far from 1-Lipschitz
    x = torch.linspace(-4, 4, 20_001, dtype=torch.float64)  # well past the grid on both sides
    y = s(x.view(-1, 1).expand(-1, 3)).detach()  # (N, C)
    fd = (y[1:] - y[:-1]).abs() / (x[1:] - x[:-1]).view(-1, 1)
    assert float(fd.max()) <= 1 + 1e-5
    assert float(s.slopes().detach().abs().max()) <= 1 + 1e-12
    assert s.lipschitz() <= 1 + 1e-12


def test_clipping_keeps_admissible_coefficients_and_matches_the_reference_formula():
    s = LinearSpline(2, 7, 1.0, "relu").double()
    assert torch.allclose(s.clipped_coefficients(), s.coefficients)
    c = 3 * torch.randn(4, 11, dtype=torch.float64)
    T = 0.2
    # the reference (Lipschitz_DSNN slope_clipping), written out with numpy
    cn = c.numpy()
    steps = np.clip(np.diff(cn, axis=1), -T, T)
    new = np.concatenate([np.zeros((4, 1)), np.cumsum(steps, axis=1)], axis=1)
    new += (cn - new).mean(axis=1, keepdims=True)
    assert np.allclose(slope_clipping(c, T).numpy(), new, atol=1e-12)


def test_interpolates_between_knots_and_extrapolates_linearly():
    s = LinearSpline(2, 5, 2.0, "identity").double()
    with torch.no_grad():  # slopes within [-1, 1]: clipping leaves them alone
        s.coefficients.copy_(torch.tensor([[0.0, 0.5, 0.2, 0.9, 1.0], [1.0, 0.0, 0.0, 0.3, -0.5]]))
    knots = np.linspace(-2, 2, 5)
    x = np.linspace(-2, 2, 401)
    out = s(torch.from_numpy(np.stack([x, x], 1))).detach().numpy()
    for ch in range(2):
        c = s.coefficients[ch].detach().numpy()
        assert np.allclose(out[:, ch], np.interp(x, knots, c), atol=1e-12)
        assert np.allclose(s(torch.tensor([[knots[2]] * 2]))[0, ch].item(), c[2])
        # beyond the grid the end pieces continue with their slopes
        lo, hi = (c[1] - c[0]) / 1.0, (c[4] - c[3]) / 1.0
        far = torch.tensor([[-5.0, -5.0], [7.0, 7.0]], dtype=torch.float64)
        y = s(far).detach().numpy()[:, ch]
        assert np.allclose(y, [c[0] + lo * (-5 + 2), c[4] + hi * (7 - 2)], atol=1e-12)


def test_relu_and_identity_initialisations_and_conv_shapes():
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 3
    relu = LinearSpline(3, 11, 1.0, "relu").double()
    ident = LinearSpline(3, 4, 1.0, "identity").double()
    assert torch.allclose(relu(x), x.clamp(min=0), atol=1e-6)  # float32 knots; extrapolated too
    assert torch.allclose(ident(x), x, atol=1e-6)


def test_tv2_on_known_coefficients():
    s = LinearSpline(2, 5, 1.0, "relu").double()  # T = 0.5
    with torch.no_grad():
        s.coefficients.copy_(torch.tensor([[0.0, 0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 0.0, 0.5, 0.0]]))
    # channel 0: slopes 0, 0, 1, 1 -> one change of 1; channel 1: slopes 1, -1, 1, -1 -> 2+2+2
    assert s.tv2().item() == pytest.approx(1.0 + 6.0)
    assert LinearSpline(4, 9, 2.0, "identity").tv2().item() == pytest.approx(0.0, abs=1e-6)
    assert LinearSpline(4, 9, 2.0, "relu").tv2().item() == pytest.approx(4.0)  # one kink each


def test_gradient_flows_to_the_coefficients():
    s = LinearSpline(3, 9, 1.0, "relu")
    x = torch.randn(16, 3) * 2
    (s(x).sum() + s.tv2()).backward()
    g = s.coefficients.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    # a sample between knots k and k+1 moves exactly those two (before the mean shift)
    s2 = LinearSpline(1, 5, 1.0, "identity").double()
    s2(torch.tensor([[0.25]], dtype=torch.float64)).sum().backward()
    assert torch.allclose(s2.coefficients.grad, torch.tensor([[0, 0, 0.5, 0.5, 0]]).double())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channels": 2, "knots": 2}, "knots"),
        ({"channels": 2, "knots": 2.5}, "knots"),
        ({"channels": 0}, "channels"),
        ({"channels": 2, "range_": 0.0}, "range_"),
        ({"channels": 2, "range_": -1.0}, "range_"),
        ({"channels": 2, "init": "tanh"}, "init"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LinearSpline(**kwargs)


def test_wrong_channel_count():
    with pytest.raises(ValueError, match="x must have shape"):
        LinearSpline(3)(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="x must have shape"):
        LinearSpline(3)(torch.zeros(3))


def test_spline_network_certificates_are_sound():
    torch.manual_seed(0)
    model = bjorck_spline_mlp(2, (16, 16), 3, "spline", knots=7, range_=1.0).double()
    with torch.no_grad():  # wild activations, so the check is not on a ReLU net in disguise
        for m in model.modules():
            if isinstance(m, LinearSpline):
                m.coefficients.normal_(0, 0.5)
    model.eval()
    L = spline_lipschitz_bound(model)
    assert L <= 1 + 1e-5
    x = torch.rand(64, 2, dtype=torch.float64)
    logits = model(x).detach()
    pred, r = logits.argmax(1), margin_radius(logits, L)
    ok = r > 0
    x_adv = pgd_l2_margin(model, x[ok], pred[ok], 0.999 * r[ok], steps=30, restarts=3)
    assert (model(x_adv).argmax(1) == pred[ok]).all()
    # and the logit map really is L-Lipschitz on random pairs (sqrt 2 for a difference)
    x2 = x + 0.1 * torch.randn_like(x)
    dy = (model(x2) - logits).norm(dim=1)
    assert (dy <= L * (x2 - x).norm(dim=1) * (1 + 1e-5)).all()


def test_sawtooth_is_one_lipschitz_with_kinks():
    x = torch.linspace(-1, 1, 4001, dtype=torch.float64)
    y = sawtooth(x)
    assert float(((y[1:] - y[:-1]).abs() / (x[1:] - x[:-1])).max()) <= 1 + 1e-9
    assert float(y.max()) == pytest.approx(0.25, abs=1e-3)
