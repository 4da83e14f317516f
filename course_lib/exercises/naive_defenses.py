r"""Checkers for the exercises of chapter 2 (Athalye, Carlini & Wagner, 2018): BPDA's
straight-through estimator and the EOT average over random transforms.

Both compare the student's function with :mod:`course_lib.adaptive` (:class:`BPDA` around a
:class:`~course_lib.defenses.Defended`, :class:`EOT`) on a tiny fixed network: the forward value
and the gradient that reaches the input, separately, since each typical mistake breaks one of the
two. The random model of the EOT check draws its noise from its own generator, reset before every
call, so the student's draws are the reference's draws.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..adaptive import bpda, eot
from ..defenses import Defended
from . import Checker, as_tensor, close, show, tiny_model


class _Lambda(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


_TRANSFORMS = {  # name: (transform g, its own derivative g'(x) or None where it is 0)
    "bit-depth reduction to 4 levels (torch.round: derivative 0)": (
        lambda z: torch.round(z * 3) / 3,
        None,
    ),
    "squaring, g(x) = x² (derivative 2x)": (lambda z: z**2, lambda z: 2 * z),
}


def _inputs(seed: int, batch: int = 16):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 4, 4, generator=gen)
    return x, torch.randint(0, 3, (batch,), generator=gen), torch.randn(x.shape, generator=gen)


def check_straight_through(student_st: Callable) -> None:
    r"""Check ``straight_through(transform, x)``: the value of ``transform(x)`` with the identity
    as its derivative, :math:`x + \mathrm{sg}(g(x) - x)`, as :func:`course_lib.adaptive.bpda`."""
    c = Checker("straight_through")
    for seed, (name, (g, g_prime)) in enumerate(_TRANSFORMS.items()):
        x, y, w = _inputs(seed)
        on = f"transform = {name}, x of shape {tuple(x.shape)} (seed {seed})"
        x_req = x.clone().requires_grad_(True)
        out = c.call(student_st, g, x_req, on=on)
        got = as_tensor(out, c.exercise, "a tensor", on)
        c.expect(got.shape == x.shape, "keeps the shape", on, str(tuple(x.shape)), str(got.shape))
        ref_value = g(x).double()
        c.mistake(
            got,
            ref_value,
            {
                "the forward pass returns x itself; it must run the defense, g(x), and only the "
                "backward pass pretends g is the identity.": x.double(),
                "you returned x + g(x) (e.g. x + g(x).detach()); subtract x's value inside the "
                "stop-gradient: x + (g(x) − x).detach().": x.double() + ref_value,
            },
            on,
            "the value g(x)",
        )
        c.expect(close(got, ref_value), "the value is transform(x)", on, "g(x)", show(got))
        grad_fn = isinstance(out, torch.Tensor) and out.requires_grad
        c.expect(
            grad_fn,
            "a gradient reaches x",
            on,
            "an output that requires grad",
            "an output detached from x",
            "only g(x) − x goes inside .detach(), the x outside it carries the gradient",
        )
        (grad,) = torch.autograd.grad((out * w).sum(), x_req, allow_unused=True)
        grad = torch.zeros_like(x) if grad is None else grad
        own = torch.zeros_like(x) if g_prime is None else g_prime(x) * w
        c.mistake(
            grad.double(),
            w.double(),
            {
                "the gradient is g's own derivative (zero for torch.round): you differentiated "
                "through the transform; BPDA's backward pass is the identity.": own.double(),
                "the gradient is zero: nothing differentiable reaches x.": torch.zeros_like(
                    x, dtype=torch.float64
                ),
            },
            f"{on}, gradient of Σ w·out",
            "the upstream gradient w passed through unchanged",
        )
        c.expect(close(grad, w), "the backward pass is the identity", on, show(w), show(grad))
        classifier = tiny_model((1, 4, 4), (16,), 3, seed)
        ref = torch.autograd.grad(
            F.cross_entropy(bpda(Defended(_Lambda(g), classifier))(x_req), y), x_req
        )[0]
        out = c.call(student_st, g, x_req, on=on)
        mine = torch.autograd.grad(F.cross_entropy(classifier(out), y), x_req, allow_unused=True)[0]
        mine = torch.zeros_like(x) if mine is None else mine
        c.expect(
            close(mine, ref),
            "the input gradient of a classifier after it agrees with course_lib's bpda",
            on,
            show(ref),
            show(mine),
        )
    c.done()


class _NoisyNet(nn.Module):
    """``tiny_model(x + sigma * noise)`` with the noise from its own generator (reset by
    :meth:`reset`), counting the inputs it sees (k calls on B inputs, or one on k·B stacked
    copies, draw the same noise)."""

    def __init__(self, sigma: float, seed: int):
        super().__init__()
        self.net, self.sigma, self.inputs = tiny_model((1, 4, 4), (16,), 4, seed), sigma, 0
        self.gen = torch.Generator()
        self.eval()

    def reset(self) -> _NoisyNet:
        self.gen.manual_seed(1234)
        self.inputs = 0
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs += x.shape[0]
        return self.net(x + self.sigma * torch.randn(x.shape, generator=self.gen))  # (B, K)


def _eot_mistakes(model: _NoisyNet, x, k: int) -> dict[str, torch.Tensor]:
    def draws(n):
        model.reset()
        return torch.stack([model(x) for _ in range(n)]).double()  # (n, B, K)

    logits = draws(k)
    once = F.log_softmax(draws(1)[0], 1)
    return {
        "you averaged the logits and then took log_softmax; EOT averages the probabilities: "
        "log((1/k) Σ softmax(f(t_j(x)))).": F.log_softmax(logits.mean(0), 1),
        "you averaged the log-probabilities (a geometric mean); average the probabilities, then "
        "take the log (torch.logsumexp(log_p, 0) − log k).": F.log_softmax(logits, 2).mean(0),
        "you summed the probabilities over the draws without dividing by k: subtract log k.": (
            torch.logsumexp(F.log_softmax(logits, 2), 0)
        ),
        "you returned the mean probabilities themselves; return their log.": F.softmax(
            logits, 2
        ).mean(0),
        "this is one draw of the randomness: call the model anew for each of the k draws.": once,
        f"you averaged {k - 1} draws instead of {k}.": torch.logsumexp(
            F.log_softmax(draws(k - 1), 2), 0
        )
        - torch.log(torch.tensor(k - 1.0)),
    }


def check_eot_log_probs(student_eot: Callable) -> None:
    r"""Check ``eot_log_probs(model, x, samples) -> (B, K)``: :math:`\log \frac1k \sum_j
    \mathrm{softmax}(f(t_j(x)))` over ``samples`` fresh calls, as
    :class:`course_lib.adaptive.EOT`."""
    c = Checker("eot_log_probs")
    for seed, k, sigma in [(0, 5, 0.5), (1, 8, 1.0)]:
        model = _NoisyNet(sigma, seed)
        x, y, _ = _inputs(seed)
        on = f"a net with Gaussian input noise σ={sigma}, samples={k}, x of shape (16, 1, 4, 4)"
        x_req = x.clone().requires_grad_(True)
        out = c.call(student_eot, model.reset(), x_req, k, on=on)
        seen = model.inputs
        got = as_tensor(out, c.exercise, "a tensor of log-probabilities", on)
        c.expect(got.shape == (16, 4), "returns (B, K)", on, "(16, 4)", str(tuple(got.shape)))
        ref = eot(model.reset(), k)(x_req)  # (B, K)
        c.mistake(got, ref.double(), _eot_mistakes(model, x, k), on, "log of the mean softmax")
        c.expect(
            seen == k * 16,
            "draws the randomness k times per input",
            on,
            f"{k} draws × 16 inputs = {k * 16} inputs seen by the model",
            f"{seen} inputs",
            "the randomness lives in the model: each call (or each stacked copy of x) is one t_j",
        )
        total = got.exp().sum(1)  # (B,)
        c.expect(
            close(total, torch.ones(16)),
            "exp(output) sums to 1 per sample (log-probabilities)",
            on,
            "1.0 for every row",
            show(total),
        )
        c.expect(close(got, ref), "agrees with course_lib's EOT", on, show(ref), show(got))
        c.expect(
            isinstance(out, torch.Tensor) and out.requires_grad,
            "a gradient reaches x",
            on,
            "an output that requires grad",
            "a detached output",
            "no torch.no_grad() or .detach(): PGD differentiates this average",
        )
        g_ref = torch.autograd.grad(F.nll_loss(ref, y), x_req)[0]
        g_got = torch.autograd.grad(F.nll_loss(out, y), x_req, allow_unused=True)[0]
        g_got = torch.zeros_like(x) if g_got is None else g_got
        c.expect(
            close(g_got, g_ref),
            "its input gradient is the reference's",
            on,
            show(g_ref),
            show(g_got),
        )
    model = _NoisyNet(0.0, 2).reset()
    x, _, _ = _inputs(2)
    on = "a net without noise (σ = 0), samples=3"
    got = as_tensor(c.call(student_eot, model, x, 3, on=on), c.exercise, "a tensor", on)
    single = F.log_softmax(model.net(x), 1)
    c.expect(
        close(got, single),
        "a deterministic model gives its own log_softmax",
        on,
        show(single),
        show(got),
    )
    c.done()
