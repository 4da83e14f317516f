"""Generators of extra training data: the DDPM's closed forms, sampling contracts, the mixer."""

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.ddpm import DDPM, linear_betas, train_ddpm
from course_lib.defenses.generated_data import MixedLoader, generate_pool
from course_lib.generative import ClassGaussians, PseudoLabelled, Unconditional


def _digits(n=60, k=3):
    """Tiny 'images' of k classes: class c is bright in row band c, plus noise, in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % k
    x = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    for c in range(k):
        x[y == c, :, 2 * c : 2 * c + 2] += 0.8
    return x.clamp(0, 1), y


# ----- DDPM ----------------------------------------------------------------------------------


def test_linear_schedule_matches_ho_et_al():
    beta = linear_betas(1000)
    assert beta[0].item() == pytest.approx(1e-4) and beta[-1].item() == pytest.approx(0.02)
    a_bar = torch.cumprod(1 - beta, 0)
    assert a_bar[-1] < 1e-4  # x_T is pure noise


def test_forward_process_matches_its_closed_form():
    """x_t = sqrt(a_bar) x0 + sqrt(1 - a_bar) eps has mean sqrt(a_bar) x0 and variance 1 - a_bar;
    and the one-shot x_t equals t steps of q(x_t | x_{t-1}) in distribution."""
    torch.manual_seed(0)
    model = DDPM(T=50, shape=(1, 4, 4), width=8, num_classes=3)
    x0 = torch.full((20_000, 1, 4, 4), 0.6)
    for t in (0, 10, 49):
        a = model.alpha_bar[t]
        xt = model.q_sample(x0, torch.full((20_000,), t), torch.randn_like(x0))
        assert xt.mean().item() == pytest.approx((a.sqrt() * 0.6).item(), abs=0.01)
        assert xt.var().item() == pytest.approx((1 - a).item(), rel=0.03, abs=1e-3)
    # chaining x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z for t = 0..10 gives the same law
    x = x0.clone()
    for t in range(11):
        x = (1 - model.beta[t]).sqrt() * x + model.beta[t].sqrt() * torch.randn_like(x)
    a = model.alpha_bar[10]
    assert x.mean().item() == pytest.approx((a.sqrt() * 0.6).item(), abs=0.01)
    assert x.var().item() == pytest.approx((1 - a).item(), rel=0.03)


def test_loss_is_the_eps_mse():
    torch.manual_seed(0)
    model = DDPM(T=20, shape=(1, 8, 8), width=8, num_classes=3)
    x, y = _digits(6)
    torch.manual_seed(1)
    loss = model.loss(x, y)
    torch.manual_seed(1)  # the same t and eps, drawn in the same order as in loss()
    t = torch.randint(0, model.T, (6,))
    eps = torch.randn_like(x)
    xt = (
        model.alpha_bar[t].sqrt().view(-1, 1, 1, 1) * (2 * x - 1)
        + (1 - model.alpha_bar[t]).sqrt().view(-1, 1, 1, 1) * eps
    )
    assert torch.allclose(loss, F.mse_loss(model.eps_net(xt, t, y), eps))


def test_ddpm_sampling_shapes_labels_and_range():
    torch.manual_seed(0)
    model = DDPM(T=10, shape=(1, 8, 8), width=8, num_classes=3).eval()
    x, y = model.sample(5)
    assert x.shape == (5, 1, 8, 8) and y.shape == (5,) and y.dtype == torch.long
    assert 0 <= x.min() and x.max() <= 1 and y.min() >= 0 and y.max() < 3
    labels = torch.tensor([2, 0, 1, 1, 2])
    _, y2 = model.sample(5, labels)
    assert torch.equal(y2, labels)


def test_ddpm_training_lowers_the_loss_and_learns_the_prior():
    torch.manual_seed(0)
    model = DDPM(T=20, shape=(1, 8, 8), width=8, num_classes=3)
    x, y = _digits(60)
    losses = train_ddpm(model, x, y, steps=60, lr=3e-3, batch_size=30)
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10
    assert torch.allclose(model.prior, torch.full((3,), 1 / 3))


def test_ddpm_bad_input():
    model = DDPM(T=5, shape=(1, 8, 8), width=8, num_classes=3)
    with pytest.raises(ValueError, match="n"):
        model.sample(0)
    with pytest.raises(ValueError, match="labels"):
        model.sample(2, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="T"):
        linear_betas(0)
    with pytest.raises(ValueError, match="steps"):
        train_ddpm(model, *_digits(6), steps=0)


# ----- class Gaussians, unconditional + pseudo-labels ----------------------------------------


def test_class_gaussians_fit_class_means_and_honour_labels():
    torch.manual_seed(0)
    x, y = _digits(300)
    gen = ClassGaussians(shape=(1, 8, 8), num_classes=3, k=5).fit(x, y)
    labels = torch.tensor([0, 1, 2] * 400)
    xs, ys = gen.sample(1200, labels)
    assert torch.equal(ys, labels) and xs.shape == (1200, 1, 8, 8)
    assert 0 <= xs.min() and xs.max() <= 1
    for c in range(3):  # the sample mean of class c is close to the data's class mean
        assert (xs[ys == c].mean(0) - x[y == c].mean(0)).abs().max() < 0.05
    _, y_free = gen.sample(3000)
    assert torch.bincount(y_free, minlength=3).min() > 900  # classes drawn with the frequencies


def test_unconditional_with_pseudo_labels_uses_the_teacher():
    x, y = _digits(90)
    gen = ClassGaussians(shape=(1, 8, 8), num_classes=3, k=4).fit(x, y)

    class Teacher(torch.nn.Module):  # says class 2 whatever the input
        def forward(self, z):
            return torch.tensor([0.0, 0.0, 1.0]).expand(z.shape[0], 3)

    free = Unconditional(gen)
    xs, ys = free.sample(7)
    assert xs.shape == (7, 1, 8, 8) and (ys == -1).all()
    xs, ys = PseudoLabelled(free, Teacher()).sample(7)
    assert (ys == 2).all()
    with pytest.raises(ValueError, match="labels"):
        free.sample(2, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        PseudoLabelled(free, Teacher()).sample(2, torch.tensor([0, 1]))


def test_class_gaussians_bad_input():
    with pytest.raises(ValueError, match="k"):
        ClassGaussians(k=0)
    gen = ClassGaussians(shape=(1, 8, 8), num_classes=3, k=2)
    with pytest.raises(ValueError, match="every class"):
        gen.fit(*_digits(4))  # class 2 has one sample
    with pytest.raises(ValueError, match="n"):
        gen.sample(0)


# ----- the batch mixer -----------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.7, 1.0])
def test_mixer_puts_the_set_fraction_of_generated_samples_in_every_batch(fraction):
    real = (torch.zeros(100, 1, 2, 2), torch.arange(100))  # labels 0..99 mark real samples
    gen = (torch.ones(40, 1, 2, 2), 1000 + torch.arange(40))  # labels >= 1000 mark generated
    loader = MixedLoader(real, gen, fraction=fraction, batch_size=64, steps=7, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 7
    for x, y in batches:
        assert x.shape == (64, 1, 2, 2)
        n_gen = (y >= 1000).sum().item()
        assert n_gen == round(fraction * 64)
        assert torch.equal(x.flatten(1)[:, 0], (y >= 1000).float())  # x and y stay aligned


def test_mixer_walks_through_all_real_data_before_repeating():
    real = (torch.zeros(50, 1), torch.arange(50))
    gen = (torch.ones(10, 1), 1000 + torch.arange(10))
    loader = MixedLoader(real, gen, fraction=0.5, batch_size=10, seed=1)
    assert len(loader) == math.ceil(50 / 5)  # one pass over the real data by default
    seen = torch.cat([y[y < 1000] for _, y in loader])
    assert torch.equal(seen.sort().values, torch.arange(50))


def test_generate_pool_draws_n_samples_in_chunks():
    x, y = _digits(60)
    gen = ClassGaussians(shape=(1, 8, 8), num_classes=3, k=3).fit(x, y)
    gx, gy = generate_pool(gen, 25, batch_size=10)
    assert gx.shape == (25, 1, 8, 8) and gy.shape == (25,)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"fraction": -0.1}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"steps": 0}, "steps"),
        ({"generated": None}, "generated"),
    ],
)
def test_mixer_bad_input(kwargs, name):
    real = (torch.zeros(10, 1), torch.arange(10))
    args = {"generated": (torch.ones(4, 1), torch.arange(4)), **kwargs}
    with pytest.raises(ValueError, match=name):
        MixedLoader(real, **args)


def test_generate_pool_bad_input():
    with pytest.raises(ValueError, match="n"):
        generate_pool(ClassGaussians(), 0)
