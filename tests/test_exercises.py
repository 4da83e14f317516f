"""Exercises: the notebooks' reference solutions pass their checkers, typical wrong answers get
their specific diagnosis, and the students' copies (``make student``) hold stubs, not solutions."""

import ast
import math
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import beta, norm
from torch import nn
from wrong_answers_234 import WRONG as WRONG_234  # chapters 2-4

from course_lib.exercises import ExerciseFailed
from course_lib.exercises.adversarial_training import check_cat_update_eps, check_pgd_early_stopped
from course_lib.exercises.lipschitz import check_lipschitz_per_logit, check_margin_radius
from course_lib.exercises.naive_defenses import check_eot_log_probs, check_straight_through
from course_lib.exercises.primer import check_fgsm, check_pgd, check_project_l2
from course_lib.exercises.regularization import check_cure_penalty, check_trades_objective
from course_lib.exercises.smoothing import check_certify_radius, check_clopper_pearson_lower
from course_lib.exercises.student import main as student_main
from course_lib.exercises.student import stub_source
from course_lib.threat import project_linf

ROOT = Path(__file__).resolve().parents[1]
EXERCISE_NOTEBOOKS = {
    "chapters/00_primer/02_exercises.ipynb": {
        "fgsm": check_fgsm,
        "project_l2": check_project_l2,
        "pgd_linf": check_pgd,
    },
    "chapters/01_lipschitz/03_exercises.ipynb": {
        "lipschitz_bound_per_logit": check_lipschitz_per_logit,
        "margin_radius": check_margin_radius,
    },
    "chapters/02_naive_defenses/04_exercises.ipynb": {
        "straight_through": check_straight_through,
        "eot_log_probs": check_eot_log_probs,
    },
    "chapters/03_adversarial_training/04_exercises.ipynb": {
        "pgd_early_stopped": check_pgd_early_stopped,
        "cat_update_eps": check_cat_update_eps,
    },
    "chapters/04_regularization/04_exercises.ipynb": {
        "trades_objective": check_trades_objective,
        "cure_penalty": check_cure_penalty,
    },
    "chapters/05_certified_defenses/09_exercises_smoothing.ipynb": {
        "clopper_pearson_lower": check_clopper_pearson_lower,
        "certify_radius": check_certify_radius,
    },
}


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def _is_imports(source: str) -> bool:
    body = ast.parse(source).body
    return bool(body) and all(isinstance(n, ast.Import | ast.ImportFrom) for n in body)


def _namespace(nb, tag: str) -> dict:
    """Run a notebook's import cells and its cells tagged ``tag``; return the namespace."""
    ns: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and (_is_imports(cell.source) or tag in _tags(cell)):
            exec(compile(cell.source, "<cell>", "exec"), ns)
    return ns


# ----- the reference solutions -------------------------------------------------------------


@pytest.mark.parametrize(
    "path, name", [(p, n) for p, checks in EXERCISE_NOTEBOOKS.items() for n in checks]
)
def test_reference_solution_passes(path, name, capsys):
    ns = _namespace(nbformat.read(ROOT / path, as_version=4), "solution")
    EXERCISE_NOTEBOOKS[path][name](ns[name])
    assert capsys.readouterr().out.startswith("✓")


def test_stored_notebooks_fold_their_solutions():
    for path, checks in EXERCISE_NOTEBOOKS.items():
        cells = nbformat.read(ROOT / path, as_version=4).cells
        solutions = [i for i, c in enumerate(cells) if "solution" in _tags(c)]
        assert len(solutions) == len(checks), path
        for i in solutions:
            cell = cells[i]
            assert {"solution", "hide-input"} <= set(_tags(cell))
            assert cell.metadata["jupyter"]["source_hidden"] is True
            stub = cells[i - 1]
            assert "stub" in _tags(stub) and stub.source == stub_source(cell.source), path
            check = cells[i + 1]
            assert any(f"check_{n}" in check.source or n in check.source for n in checks)


# ----- typical wrong answers and their diagnoses -------------------------------------------


def _grad(model, x, y):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(x), y), x)[0]


def _fgsm_like(step, clip=True):
    def fgsm(model, x, y, eps):
        x_adv = x + eps * step(_grad(model, x, y))
        return x_adv.clamp(0, 1) if clip else x_adv

    return fgsm


def _project(factor, clip=True):
    def project(x_adv, x, eps):
        delta = x_adv - x
        out = x + delta * factor(delta, eps)
        return out.clamp(0, 1) if clip else out

    return project


def _per_sample(delta):
    return delta.flatten(1).norm(dim=1).view(-1, *[1] * (delta.ndim - 1))


def _pgd(project_around_iterate=False, fixed_grad=False, sign=1, extra_steps=0):
    def pgd(model, x, y, eps, alpha, steps):
        x_adv, g0 = x.clone(), _grad(model, x, y)
        for _ in range(steps + extra_steps):
            g = g0 if fixed_grad else _grad(model, x_adv, y)
            x_adv = x_adv + sign * alpha * g.sign()
            centre = x_adv if project_around_iterate else x
            x_adv = project_linf(x_adv, centre, eps)
        return x_adv

    return pgd


def _linears(model):
    return [m for m in model if isinstance(m, nn.Linear)]


def _per_logit(hidden_norm, last):
    def bound(model):
        ws = [m.weight.detach() for m in _linears(model)]
        k = math.prod(float(hidden_norm(w)) for w in ws[:-1])
        return k * last(ws[-1])

    return bound


def _spectral(w):
    return torch.linalg.matrix_norm(w, 2)


SQRT2 = math.sqrt(2)


def _margin(margin, scale=SQRT2):
    return lambda logits, L: margin(logits) / (scale * L)


def _top2_gap(logits):
    top2 = logits.topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


def _masked_gap(logits):  # removes every entry equal to the maximum, so ties look certified
    top = logits.amax(1, keepdim=True)
    return top[:, 0] - logits.masked_fill(logits == top, -math.inf).amax(1)


def _cp(q, a, b, zero_branch=True):
    def lower(n_A, n, alpha):
        if zero_branch and n_A == 0:
            return 0.0
        return float(beta.ppf(q(alpha), a(n_A, n), b(n_A, n)))

    return lower


def _wald(n_A, n, alpha):
    p = n_A / n
    return max(0.0, p - norm.ppf(1 - alpha) * math.sqrt(p * (1 - p) / n))


def _certify(radius, abstain=True):
    def certify(c_A, p, sigma):
        if abstain and p < 0.5:
            return -1, 0.0
        return c_A, radius(p, sigma)

    return certify


def _raises(error):
    def fn(*args):
        raise error

    return fn


A, B = (lambda n_A, n: n_A), (lambda n_A, n: n - n_A + 1)
WRONG = {
    check_fgsm: [
        (_fgsm_like(lambda g: g), "raw gradient"),
        (_fgsm_like(lambda g: -g.sign()), "stepped *down* the loss"),
        (_fgsm_like(torch.sign, clip=False), "not clipped to [0, 1]"),
        (_fgsm_like(lambda g: g / g.abs()), "g / |g| divides by zero"),
        (_raises(TypeError("bad operand")), "raised TypeError: bad operand"),
        (lambda model, x, y, eps: x.clone(), "no step was taken"),
        (lambda model, x, y, eps: model.train() and x, "the model's mode is left alone"),
    ],
    check_project_l2: [
        (_project(lambda d, e: e / _per_sample(d)), "even the points already inside"),
        (_project(lambda d, e: min(1.0, e / float(d.norm()))), "over the whole batch"),
        (_project(lambda d, e: (e / _per_sample(d)).clamp(max=1), clip=False), "not clipped"),
        (lambda x_adv, x, eps: project_linf(x_adv, x, eps), "that is the ℓ∞ projection"),
        (_project(lambda d, e: (e / _per_sample(d) ** 2).clamp(max=1)), "‖δ‖² instead"),
        (_project(lambda d, e: _per_sample(d).clamp(max=e) / _per_sample(d)), "guard the division"),
    ],
    check_pgd: [
        (_pgd(project_around_iterate=True), "never projected back onto the ε-ball"),
        (_pgd(fixed_grad=True), "reuses the gradient at the clean x"),
        (_pgd(sign=-1), "descends the loss"),
        (_pgd(extra_steps=1), "steps instead of"),
        (_raises(NotImplementedError()), "not implemented yet"),
        (lambda model, x, y, eps, alpha, steps: None, "returns a tensor x_adv"),
    ],
    check_lipschitz_per_logit: [
        (_per_logit(_spectral, lambda w: torch.ones(w.shape[0])), "the last layer is missing"),
        (_per_logit(_spectral, lambda w: torch.full((w.shape[0],), float(_spectral(w)))), "global"),
        (_per_logit(_spectral, lambda w: w.norm(dim=0)), "norms of the columns"),
        (_per_logit(torch.linalg.norm, lambda w: w.norm(dim=1)), "Frobenius"),
        (_per_logit(_spectral, lambda w: w.norm(dim=1) ** 2), "squared norms"),
        (_per_logit(lambda w: w.abs().max(), lambda w: w.abs().amax(1)), "(sound)"),
    ],
    check_margin_radius: [
        (_margin(_top2_gap, scale=1.0), "the √2 is missing"),
        (_margin(_top2_gap, scale=2.0), "you divided by 2L"),
        (_margin(lambda f: f.amax(1) - f.amin(1)), "*smallest* one"),
        (_margin(lambda f: f.amax(1) - f.mean(1)), "mean logit"),
        (_margin(_masked_gap), "a tie of the top two logits gets radius 0"),
    ],
    check_clopper_pearson_lower: [
        (_cp(lambda a: a / 2, A, B), "*two-sided* interval"),
        (_cp(lambda a: a, lambda k, n: k + 1, lambda k, n: n - k), "upper bound's"),
        (_cp(lambda a: 1 - a, A, B), "(1 − α) quantile"),
        (_wald, "normal approximation"),
        (lambda n_A, n, alpha: n_A / n, "the estimate n_A / n itself"),
        (_cp(lambda a: a, A, B, zero_branch=False), "the bound is 0 when n_A = 0"),
    ],
    check_certify_radius: [
        (_certify(lambda p, s: float(norm.ppf(p))), "σ is missing"),
        (_certify(lambda p, s: s * float(norm.ppf(p)), abstain=False), "abstains (−1, 0.0)"),
        (_certify(lambda p, s: s * float(norm.cdf(p))), "Φ (norm.cdf) instead"),
        (_certify(lambda p, s: s**2 * float(norm.ppf(p))), "σ² instead of σ"),
        (_certify(lambda p, s: s / 2 * float(norm.ppf(p))), "the 1/2 cancels"),
        (lambda c, p, s: [c, 0.0], "returns a tuple"),
    ],
}
WRONG.update(WRONG_234)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # a chapter-4 mistake
@pytest.mark.parametrize(
    "check, wrong, message",
    [(check, w, m) for check, cases in WRONG.items() for w, m in cases],
    ids=lambda v: getattr(v, "__name__", None) if callable(v) else str(v)[:30],
)
def test_wrong_answer_gets_its_diagnosis(check, wrong, message):
    with pytest.raises(ExerciseFailed) as failure:
        check(wrong)
    text = str(failure.value)
    assert message in text, text
    assert "fails on" in text or "raised" in text or "not implemented" in text


def test_every_exercise_has_two_wrong_answers():
    checks = {c for cs in EXERCISE_NOTEBOOKS.values() for c in cs.values()}
    assert checks == set(WRONG)
    assert all(len(cases) >= 2 for cases in WRONG.values())


def test_failure_shows_without_traceback_in_ipython():
    error = ExerciseFailed("fgsm: property 'x' fails on y")
    assert error._render_traceback_() == ["✗ fgsm: property 'x' fails on y"]


# ----- students' copies --------------------------------------------------------------------


def test_student_copies_have_stubs_not_solutions(tmp_path, capsys):
    assert student_main([str(tmp_path)]) == 0
    written = capsys.readouterr().out
    originals = sorted((ROOT / "chapters").rglob("*.ipynb"))
    assert written.count("wrote ") == len(originals)
    for original in originals:
        copy = tmp_path / original.relative_to(ROOT / "chapters")
        nb = nbformat.read(copy, as_version=4)
        assert not any("solution" in _tags(c) for c in nb.cells), copy
        rel = original.relative_to(ROOT).as_posix()
        if rel not in EXERCISE_NOTEBOOKS:
            assert len(nb.cells) == len(nbformat.read(original, as_version=4).cells)
            continue
        ns = _namespace(nb, "stub")
        for name, check in EXERCISE_NOTEBOOKS[rel].items():
            with pytest.raises(ExerciseFailed, match="not implemented yet"):
                check(ns[name])
            stub_cells = [c for c in nb.cells if f"def {name}(" in c.source]
            assert len(stub_cells) == 1 and "raise NotImplementedError" in stub_cells[0].source
