import pytest
import torch
import torch.nn.functional as F

from course_lib.landscape import (
    cross_entropy_of,
    gradient_sign_direction,
    grid,
    hessian_top_eigenvalues,
    hessian_vector_product,
    loss_line,
    loss_plane,
    random_direction,
)


def _quadratic(d=6, batch=3, seed=0, spectrum=(5.0, -3.0, 2.0, 1.0, 0.5, 0.1)):
    """Per-sample quadratics l_i(x) = 1/2 x^T H_i x with known eigenvalues."""
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(batch, d, d, generator=gen, dtype=torch.float64))[0]
    lam = torch.tensor(spectrum, dtype=torch.float64)
    scale = torch.arange(1, batch + 1, dtype=torch.float64).view(-1, 1)  # other H per sample
    H = Q @ torch.diag_embed(lam * scale) @ Q.transpose(1, 2)  # (B, d, d)
    x = torch.randn(batch, d, generator=gen, dtype=torch.float64)

    def loss(z):
        return 0.5 * torch.einsum("bi,bij,bj->b", z, H, z)

    return loss, H, x, lam * scale


def test_plane_equals_point_by_point_evaluation(random_cnn):
    model, x, y = random_cnn
    u = gradient_sign_direction(model, x[:1], y[:1])[0]
    v = random_direction(x[:1], generator=torch.Generator().manual_seed(1))[0]
    a, b = grid(0.3, 5), torch.tensor([-0.2, 0.0, 0.1])
    surface = loss_plane(model, x[0], y[0], u, v, a, b, chunk=4)  # chunks cut the grid
    for i, bi in enumerate(b):
        for j, aj in enumerate(a):
            point = (x[0] + aj * u + bi * v)[None]
            expected = F.cross_entropy(model(point), y[:1])
            assert surface[i, j] == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    line = loss_line(model, x[0], y[0], u, a)
    assert torch.allclose(line, surface[1], atol=1e-6)  # b = 0 row


def test_directions():
    like = torch.rand(4, 1, 5, 5)
    r = random_direction(like, "rademacher")
    assert set(r.unique().tolist()) <= {-1.0, 1.0}
    g = random_direction(like, "gaussian")
    assert torch.allclose(g.flatten(1).norm(dim=1), torch.full((4,), 5.0))
    with pytest.raises(ValueError, match="kind"):
        random_direction(like, "uniform")


def test_hvp_is_the_hessian_times_v():
    loss, H, x, _ = _quadratic()
    v = torch.randn_like(x)
    assert torch.allclose(hessian_vector_product(loss, x, v), torch.einsum("bij,bj->bi", H, v))


def test_top_eigenvalues_are_exact_on_a_quadratic():
    loss, _, x, lam = _quadratic()
    top = hessian_top_eigenvalues(loss, x, k=2, iters=100)  # (B, 2)
    expected = lam[:, :2]  # 5s and -3s: largest magnitudes, signs kept
    assert torch.allclose(top, expected, atol=1e-6)


def test_top_eigenvalue_of_a_network_matches_the_dense_hessian():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(20, 8), torch.nn.Tanh(), torch.nn.Linear(8, 10)
    ).double()
    xs, y = torch.randn(2, 20, dtype=torch.float64), torch.tensor([3, 7])
    exact = []
    for i in range(2):
        h = torch.autograd.functional.hessian(
            lambda z, i=i: F.cross_entropy(model(z[None]), y[i : i + 1]), xs[i]
        )  # (20, 20)
        eig = torch.linalg.eigvalsh(h)
        exact.append(eig[eig.abs().argmax()])
    top = hessian_top_eigenvalues(cross_entropy_of(model, y[:2]), xs, k=1, iters=200)[:, 0]
    assert torch.allclose(top, torch.stack(exact), rtol=1e-4)


def test_bad_input_raises(random_cnn):
    model, x, y = random_cnn
    with pytest.raises(ValueError, match="resolution"):
        grid(0.3, 1)
    with pytest.raises(ValueError, match="radius"):
        grid(0.0, 11)
    with pytest.raises(ValueError, match="k"):
        hessian_top_eigenvalues(cross_entropy_of(model, y), x, k=0)
    with pytest.raises(ValueError, match="iters"):
        hessian_top_eigenvalues(cross_entropy_of(model, y), x, iters=0)
    with pytest.raises(ValueError, match="u and v"):
        loss_plane(model, x[0], y[0], x[0, 0], x[0], grid(0.1, 3), grid(0.1, 3))
    with pytest.raises(ValueError, match="chunk"):
        loss_plane(model, x[0], y[0], x[0], x[0], grid(0.1, 3), grid(0.1, 3), chunk=0)


def test_landscape_figures_have_one_slider_step_per_surface():
    from course_lib.viz.landscape import landscape_contours, landscape_surfaces

    a = grid(0.3, 5)
    surfaces = {"one": torch.rand(5, 5), "two": torch.rand(5, 5) + 1}
    fig = landscape_surfaces(a, a, surfaces, vmax=2.0)
    assert [t.type for t in fig.data] == ["surface", "surface"]
    assert len(fig.layout.sliders[0].steps) == 2
    assert fig.layout.scene.zaxis.range == (0, 2.0)
    figure = landscape_contours(a, a, surfaces, eps=0.1)
    assert len(figure.axes) == 3  # two maps and the colour bar
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_the_chapter_recipes_are_registered():
    from course_lib import zoo
    from course_lib.defenses import consistency, regularizers, tla, trades

    for name in ["mnist_cure", "mnist_trades", "mnist_tla", "mnist_consistency", "mnist_tla_lam0"]:
        assert name in zoo.RECIPES
    assert all(f"moons_trades_b{b:g}" in zoo.RECIPES for b in zoo.regularization.TRADES_TOY_BETAS)
    # the cache key covers the regularizers' code (and not the landscape, which trains nothing)
    assert set(zoo.regularization.TRAINING_MODULES) == {regularizers, trades, tla, consistency}


def test_the_drawn_linf_section_is_the_diamond_at_norm_eps_in_pixel_space(random_cnn):
    from course_lib.landscape import linf_section
    from course_lib.viz.landscape import linf_diamond

    model, x, y = random_cnn
    u = gradient_sign_direction(model, x[:1], y[:1])[0]
    v = random_direction(x[:1], generator=torch.Generator().manual_seed(3))[0]
    eps = 0.1
    # the drawn diamond: every vertex and edge midpoint has l_inf norm eps in pixel space
    da, db = (torch.tensor(t, dtype=torch.float64) for t in linf_diamond(eps))
    mids_a, mids_b = (da[:-1] + da[1:]) / 2, (db[:-1] + db[1:]) / 2
    for pa, pb in [(da, db), (mids_a, mids_b)]:
        delta = pa[:, None] * u.flatten().double() + pb[:, None] * v.flatten().double()
        assert torch.allclose(delta.abs().amax(1), torch.full_like(pa, eps))
    # the ray-cast section of the same directions lies on the diamond |a| + |b| = eps
    sa, sb = linf_section(u, v, eps, n_angles=64)
    delta = sa[:, None] * u.flatten().double() + sb[:, None] * v.flatten().double()
    assert torch.allclose(delta.abs().amax(1), torch.full_like(sa, eps))
    assert torch.allclose(sa.abs() + sb.abs(), torch.full_like(sa, eps))
    # a square corner (eps, eps) lies outside the ball: norm 2 eps
    assert torch.isclose((eps * u + eps * v).abs().max(), torch.tensor(2 * eps))


def test_linf_section_is_the_square_for_disjoint_supports():
    from course_lib.landscape import linf_section

    u, v = torch.tensor([1.0, 0.0, -1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0, 1.0])
    a, b = linf_section(u, v, 0.2, n_angles=8)  # rays at multiples of 45 degrees
    assert torch.allclose(torch.maximum(a.abs(), b.abs()), torch.full_like(a, 0.2))
    assert torch.allclose(a[1], torch.tensor(0.2, dtype=a.dtype))  # the corner (0.2, 0.2)
    with pytest.raises(ValueError, match="same shape"):
        linf_section(u, v[:3], 0.2)
    with pytest.raises(ValueError, match="span"):
        linf_section(u, 2 * u, 0.2)
    with pytest.raises(ValueError, match="eps"):
        linf_section(u, v, -1.0)
