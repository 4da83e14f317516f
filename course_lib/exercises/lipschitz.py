r"""Checkers for the exercises of chapter 1: the per-logit Lipschitz bound of an MLP and the margin
radius :math:`r = \text{margin} / (\sqrt 2 L)` (Szegedy et al., 2014; Tsuzuku et al., 2018).

The bound is checked for soundness against the gradient norms of each logit at random inputs (a
bound below a measured slope is no bound), against the global product bound it refines, and
against :func:`course_lib.lipschitz.lipschitz_upper_bound_per_logit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..lipschitz import lipschitz_upper_bound, lipschitz_upper_bound_per_logit, margin_radius
from . import Checker, as_tensor, close, show


def _mlp(sizes: list[int], seed: int) -> nn.Sequential:
    """A flat ``Linear, ReLU, ..., Linear`` net with fixed random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1]).eval()


def _logit_gradient_norms(model: nn.Sequential, d: int, seed: int, n: int = 256) -> torch.Tensor:
    r""":math:`\max_x \|\nabla f_j(x)\|_2` over ``n`` random inputs, per logit ``(K,)``: a lower
    bound of each logit's Lipschitz constant (one backward pass per logit; samples are
    independent, so the gradient of the sum is each sample's gradient)."""
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)
    logits = model(x)  # (n, K)
    norms = []
    for j in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, j].sum(), x, retain_graph=True)  # (n, d)
        norms.append(g.norm(dim=1).amax())
    return torch.stack(norms).detach().double()  # (K,)


def check_lipschitz_per_logit(student_bound: Callable) -> None:
    r"""Check ``lipschitz_bound_per_logit(model) -> (K,)``:
    :math:`L^j = \big(\prod_{i<m} \|W_i\|_2\big)\,\|w_j\|_2` for a flat ``Linear``/``ReLU`` net."""
    c = Checker("lipschitz_bound_per_logit")
    for seed, sizes in [(0, [2, 16, 8, 3]), (1, [5, 7, 4]), (2, [3, 12, 12, 12, 6])]:
        model = _mlp(sizes, seed)
        on = f"an MLP with layer sizes {sizes} (seed {seed})"
        K = sizes[-1]
        got = as_tensor(
            c.call(student_bound, model, on=on), c.exercise, "a tensor of shape (K,)", on
        )
        ref = lipschitz_upper_bound_per_logit(model)  # (K,) float64
        Ws = [m.weight.detach().double() for m in model if isinstance(m, nn.Linear)]
        k_sub = math.prod(float(torch.linalg.matrix_norm(W, 2)) for W in Ws[:-1])
        k_fro = math.prod(float(W.norm()) for W in Ws[:-1])
        if got.shape != (K,) and got.shape == (Ws[-1].shape[1],):
            c.expect(
                False,
                "one bound per logit, shape (K,)",
                on,
                f"shape ({K},)",
                f"shape {tuple(got.shape)}",
                "you took the norms of the columns of the last weight; nn.Linear stores W as "
                "(out, in), so logit j's weights are row j: W.norm(dim=1).",
            )
        c.expect(
            got.shape == (K,), "one bound per logit, shape (K,)", on, f"({K},)", str(got.shape)
        )
        c.mistake(
            got,
            ref,
            {
                "every entry is the product of the hidden layers' norms: the last layer is "
                "missing; multiply by ‖w_j‖₂, the norm of row j of the last weight.": torch.full(
                    (K,), k_sub
                ),
                "every entry is the global bound ∏‖W_i‖₂: the per-logit bound uses the row "
                "norm ‖w_j‖₂ of the last layer, not its spectral norm ‖W_m‖₂.": torch.full(
                    (K,), lipschitz_upper_bound(model)
                ),
                "the hidden layers use the Frobenius norm ‖W‖_F, which is ≥ ‖W‖₂: still a "
                "bound, but a looser one than the chapter's (use torch.linalg.matrix_norm(W, "
                "ord=2)).": k_fro * Ws[-1].norm(dim=1),
                "the last layer's rows are squared norms ‖w_j‖₂²; take the norm itself.": k_sub
                * Ws[-1].norm(dim=1) ** 2,
            },
            on,
            show(ref),
        )
        slopes = _logit_gradient_norms(model, sizes[0], seed)  # (K,)
        j = int((got - slopes).argmin())
        c.expect(
            bool((got >= slopes * (1 - 1e-6)).all()),
            "each bound is at least the slope measured for its logit (sound)",
            f"{on}, logit {j}",
            f"L^{j} ≥ {float(slopes[j]):.4g} (the gradient norm of f_{j} at a random input)",
            f"{float(got[j]):.4g}",
            "a Lipschitz bound below a measured slope is no bound: use spectral norms ‖W‖₂ "
            "(largest singular value) of every layer",
        )
        c.expect(
            bool((got <= lipschitz_upper_bound(model) * (1 + 1e-6)).all()),
            "each bound is at most the global product bound",
            on,
            f"≤ {lipschitz_upper_bound(model):.4g}",
            show(got),
        )
        c.expect(
            close(got, ref), "agrees with the reference per-logit bound", on, show(ref), show(got)
        )
    c.done()


def check_margin_radius(student_radius: Callable) -> None:
    r"""Check ``margin_radius(logits, L) -> (B,)``: :math:`r = (f_j - \max_{i\ne j} f_i) /
    (\sqrt 2 L)` with :math:`j` the predicted class."""
    c = Checker("margin_radius")
    gen = torch.Generator().manual_seed(0)
    for L, K in [(1.0, 3), (4.5, 10)]:
        logits = torch.randn(16, K, generator=gen) * 3  # (16, K)
        on = f"16 random logit vectors with K={K} classes, L={L}"
        got = as_tensor(c.call(student_radius, logits, L, on=on), c.exercise, "a tensor (B,)", on)
        c.expect(
            got.shape == (16,), "one radius per input, shape (B,)", on, "(16,)", str(got.shape)
        )
        ref = margin_radius(logits, L).double()
        f = logits.double()
        top2 = f.topk(2, dim=1).values  # (B, 2)
        margin = top2[:, 0] - top2[:, 1]  # (B,)
        c.mistake(
            got,
            ref,
            {
                "the √2 is missing: f_j − f_i = (e_j − e_i)ᵀf and ‖e_j − e_i‖₂ = √2, so each "
                "difference of logits is √2·L-Lipschitz: r = margin / (√2 L).": margin / L,
                "you divided by 2L, the per-logit radius (L^j + L^i with all L^i = L): sound "
                "but smaller than margin / (√2 L) for one L of the whole logit map.": margin
                / (2 * L),
                "the margin is top logit minus the *smallest* one; use the runner-up, "
                "max_{i≠j} f_i.": (top2[:, 0] - f.amin(1)) / (math.sqrt(2) * L),
                "L multiplies instead of divides: r = margin / (√2 L).": margin * L / math.sqrt(2),
                "the margin is top logit minus the mean logit; use the runner-up, max_{i≠j} f_i.": (
                    top2[:, 0] - f.mean(1)
                )
                / (math.sqrt(2) * L),
            },
            on,
            "margin / (√2 L)",
        )
        c.expect(bool((got >= 0).all()), "radii are ≥ 0", on, "r ≥ 0", show(got))
        i = int((got - ref).abs().argmax())
        c.expect(
            close(got, ref),
            "agrees with margin / (√2 L)",
            f"{on}, input {i} (logits {show(logits[i])})",
            f"{float(ref[i]):.4g}",
            f"{float(got[i]):.4g}",
        )
    # A two-class linear model f(x) = (-w.x - b, w.x + b): its logit map is exactly
    # L = sqrt(2)||w||-Lipschitz and margin / (sqrt(2) L) is the exact distance |w.x + b| / ||w||.
    gen = torch.Generator().manual_seed(1)
    w, b, x = torch.randn(5, generator=gen), 0.3, torch.randn(16, 5, generator=gen)
    z = (x @ w + b).double()  # (16,)
    logits, L = torch.stack([-z, z], 1), math.sqrt(2) * float(w.norm())
    on = "a two-class linear model f(x) = (−wᵀx − b, wᵀx + b), L = ‖W‖₂ = √2‖w‖"
    got = as_tensor(c.call(student_radius, logits, L, on=on), c.exercise, "a tensor (B,)", on)
    distance = z.abs() / float(w.norm())  # (16,) exact distance to the decision boundary
    i = int((got - distance).argmax())
    c.expect(
        bool((got <= distance * (1 + 1e-6)).all()),
        "sound: never beyond the exact distance to the boundary of a linear model",
        f"{on}, input {i}",
        f"r ≤ {float(distance[i]):.4g} (an adversarial example exists at that distance)",
        f"{float(got[i]):.4g}",
        "the radius claims points that are already on the other side of the boundary",
    )
    ties = torch.tensor([[2.0, 2.0, -1.0], [0.5, 3.0, 3.0], [1.0, 1.0, 1.0]])
    on = f"tied top logits {ties.tolist()}"
    got = as_tensor(c.call(student_radius, ties, 2.0, on=on), c.exercise, "a tensor (B,)", on)
    c.expect(
        close(got, torch.zeros(3)),
        "a tie of the top two logits gets radius 0",
        on,
        "[0, 0, 0]",
        show(got),
        "a tie is not certified: take the two largest values, logits.topk(2, dim=1), rather "
        "than masking every entry equal to the maximum",
    )
    c.done()
