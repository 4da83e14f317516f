"""Bad input everywhere: every public function of ``course_lib`` gets the mistakes a new user makes
and must answer with a ``ValueError`` that names the argument (and, where given, the accepted range
or shape), never an ``IndexError`` from ``F.cross_entropy``, a conv2d ``RuntimeError`` or a CUDA
device-side assert.

The table is a list of :class:`Row` ``(id, call, name, accepted)``: ``call(f)`` makes the mistake
on the shared objects ``f`` (a tiny CNN and MNIST-shaped batch, a 2-D toy MLP, smoothed
classifiers); ``name`` must appear in the message as a word, ``accepted`` (optional) as a substring.
Functions of the shape ``fn(model, x, y)`` get the whole list of typical mistakes at once through
:func:`model_rows`. **Each new chapter adds rows for its public functions and methods** (at the end,
under a comment naming the chapter), so that the table keeps covering the whole library.

Per-step primitives (``threat`` projections and steps) only get the mistakes they can detect
without a pass over the data (dtype, shape, empty, negative radius): they run on every PGD step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import torch

from course_lib import attacks, checks, data, threat, train, zoo
from course_lib.certify import metrics, noise_shapes, smoothing, soft_smoothing
from course_lib.config import seed_everything
from course_lib.lipschitz import attacks as lip_attacks
from course_lib.lipschitz import bounds, certificates, measure
from course_lib.models import mlp, small_cnn
from course_lib.viz import plots


class Row(NamedTuple):
    id: str
    call: Callable[[SimpleNamespace], object]
    name: str  # the argument the message must name
    accepted: str | None = None  # a piece of the accepted range or shape, if the row asserts one


@pytest.fixture(scope="module")
def f() -> SimpleNamespace:
    seed_everything(0)
    cnn = small_cnn().eval()  # 1 channel, 28x28, 10 classes
    toy = mlp(2, (8,), 2).eval()  # 2-D points, 2 classes
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    return SimpleNamespace(
        cnn=cnn,
        toy=toy,
        x=x,
        y=y,
        pts=torch.rand(4, 2),
        smooth=smoothing.Smooth(cnn, 10, 0.25),
        laplace=noise_shapes.SmoothLaplaceL1(cnn, 10, 0.25),
        logits=torch.randn(4, 10),
        radii=torch.rand(4),
        correct=torch.tensor([True, False, True, True]),
    )


# ----- the typical mistakes for any fn(model, x, y) ---------------------------------------------

MISTAKES: list[tuple[str, Callable, str, str | None]] = [
    # (id, (x, y) -> (x', y'), which argument, accepted)
    ("y_out_of_range", lambda x, y: (x, torch.tensor([0, 1, 2, 10])), "y", "[0, 9]"),
    ("y_negative", lambda x, y: (x, torch.tensor([0, -1, 2, 3])), "y", "got -1"),
    ("y_float", lambda x, y: (x, y.float()), "y", "int64"),
    ("y_int32", lambda x, y: (x, y.int()), "y", "int64"),
    ("y_length", lambda x, y: (x, y[:3]), "y", None),
    ("x_3_channels", lambda x, y: (x.expand(4, 3, 28, 28), y), "x", "1 channel"),
    ("x_32_pixels", lambda x, y: (torch.rand(4, 1, 32, 32), y), "x", "does not fit"),
    ("x_uint8", lambda x, y: ((x * 255).to(torch.uint8), y), "x", "x.float() / 255"),
    ("x_nan", lambda x, y: (x.masked_fill(x > 0.9, math.nan), y), "x", None),
    ("x_empty", lambda x, y: (x[:0], y[:0]), "x", None),
    ("x_one_image", lambda x, y: (x[0], y[:1]), "x", None),  # (C, H, W) where (B, C, H, W) goes
]


# Training losses and noisy_logits run on every training step: they check dtype, NaN, channels
# and labels (against the logits they compute anyway) but make no extra forward pass, so a wrong
# image size ends in torch's own shape error. train_epoch cannot probe the model with the loader's
# batch either: a loss may transform the batch first (chapter 2's resize-and-pad model).
PER_STEP = ("x_32_pixels",)


def model_rows(fn_id: str, call: Callable, x_name="x", y_name="y", skip=()) -> list[Row]:
    """All :data:`MISTAKES` for ``call(f, x, y)``, renaming ``x``/``y`` to the function's names."""
    rows = []
    for mistake, corrupt, arg, accepted in MISTAKES:
        if mistake in skip or (y_name is None and arg == "y"):
            continue
        name = {"x": x_name, "y": y_name}[arg]
        if accepted == "x.float() / 255":
            accepted = f"{x_name}.float() / 255"

        def run(f, corrupt=corrupt):
            x, y = corrupt(f.x, f.y)
            return call(f, x, y)

        rows.append(Row(f"{fn_id}-{mistake}", run, name, accepted))
    return rows


def _loader(x, y):
    return [(x, y)]  # a plain list: a DataLoader or TensorLoader would check the pixels itself


ROWS: list[Row] = [
    # ----- attacks, train, checks (chapter 0) -----
    *model_rows("fgsm", lambda f, x, y: attacks.fgsm(f.cnn, x, y, 0.1)),
    *model_rows("pgd", lambda f, x, y: attacks.pgd(f.cnn, x, y, 0.1, steps=1)),
    *model_rows("pgd_eps0", lambda f, x, y: attacks.pgd(f.cnn, x, y, 0.0)),
    *model_rows(
        "pgd_targeted",
        lambda f, x, y: attacks.pgd_targeted(f.cnn, x, y, 0.1, steps=1),
        y_name="target",
    ),
    *model_rows("pgd_climb", lambda f, x, y: attacks.pgd_climb(f.cnn, x, y, 0.1, 0.05, 1)),
    *model_rows(
        "keep_worst_case",
        lambda f, x, y: attacks.keep_worst_case(f.cnn, x, x, y),
        x_name="x_a",
    ),
    *model_rows("input_gradient", lambda f, x, y: attacks.input_gradient(f.cnn, x, y)),
    *model_rows("accuracy", lambda f, x, y: train.accuracy(f.cnn, x, y)),
    *model_rows(
        "robust_accuracy",
        lambda f, x, y: train.robust_accuracy(f.cnn, x, y, lambda m, a, b: a),
    ),
    *model_rows("predict", lambda f, x, y: train.predict(f.cnn, x), y_name=None),
    *model_rows(
        "cross_entropy_loss",
        lambda f, x, y: train.cross_entropy_loss(f.cnn, x, y),
        skip=PER_STEP,
    ),
    *model_rows("pgd_at_loss", lambda f, x, y: train.pgd_at_loss(0.1, steps=1)(f.cnn, x, y)),
    *model_rows(
        "train_epoch",
        lambda f, x, y: train.train_epoch(
            small_cnn(),
            _loader(x, y),
            train.cross_entropy_loss,
            torch.optim.SGD(f.cnn.parameters()),
        ),
        x_name="x",
        # an empty batch is the loader's business (TensorLoader rejects it); the image size, the
        # loss's (see PER_STEP)
        skip=("x_empty", *PER_STEP),
    ),
    *model_rows(
        "fit",
        lambda f, x, y: train.fit(small_cnn(), _loader(x, y), epochs=1),
        skip=("x_empty", *PER_STEP),
    ),
    *model_rows(
        "robustness_sanity",
        lambda f, x, y: checks.robustness_sanity(f.cnn, x, y, [0.1], steps=1),
    ),
    Row("pgd-eps_negative", lambda f: attacks.pgd(f.cnn, f.x, f.y, -0.1), "eps", ">= 0"),
    Row("pgd-norm", lambda f: attacks.pgd(f.cnn, f.x, f.y, 0.1, norm="l3"), "norm", "linf"),
    Row("pgd-steps", lambda f: attacks.pgd(f.cnn, f.x, f.y, 0.1, steps=-1), "steps", ">= 0"),
    Row("pgd-restarts", lambda f: attacks.pgd(f.cnn, f.x, f.y, 0.1, restarts=0), "restarts"),
    Row("pgd-alpha", lambda f: attacks.pgd(f.cnn, f.x, f.y, 0.1, alpha=0.0), "alpha", "> 0"),
    Row(
        "pgd_climb-direction",
        lambda f: attacks.pgd_climb(f.cnn, f.x, f.y, 0.1, 0.05, 1, direction=2),
        "direction",
    ),
    Row(
        "keep_worst_case-x_b_shape",
        lambda f: attacks.keep_worst_case(f.cnn, f.x, f.x[:2], f.y),
        "x_b",
    ),
    Row("predict-batch_size", lambda f: train.predict(f.cnn, f.x, batch_size=0), "batch_size"),
    Row(
        "robust_accuracy-attack",
        lambda f: train.robust_accuracy(f.cnn, f.x, f.y, attack=0.1),
        "attack",
    ),
    Row("fit-epochs", lambda f: train.fit(f.cnn, _loader(f.x, f.y), epochs=-1), "epochs"),
    Row("fit-lr", lambda f: train.fit(f.cnn, _loader(f.x, f.y), lr=0.0), "lr", "> 0"),
    Row("pgd_at_loss-eps", lambda f: train.pgd_at_loss(-1.0), "eps"),
    Row("pgd_at_loss-steps", lambda f: train.pgd_at_loss(0.1, steps=0), "steps", ">= 1"),
    Row(
        "robustness_sanity-eps_grid",
        lambda f: checks.robustness_sanity(f.cnn, f.x, f.y, []),
        "eps_grid",
    ),
    Row(
        "robustness_sanity-norm",
        lambda f: checks.robustness_sanity(f.cnn, f.x, f.y, [0.1], norm="l1"),
        "norm",
    ),
    Row("expect-tensor", lambda f: checks.expect(f.y > 1, "all large"), "condition"),
    Row("expect-message", lambda f: checks.expect(True, None), "message"),
    # threat models: cheap checks only (they run on every step)
    Row("project_linf-shape", lambda f: threat.project_linf(f.x, f.x[:2], 0.1), "x_adv"),
    Row(
        "project_linf-uint8",
        lambda f: threat.project_linf(f.x, (f.x * 255).byte(), 0.1),
        "x",
        "x.float() / 255",
    ),
    Row("project_l2-eps", lambda f: threat.project_l2(f.x, f.x, -1.0), "eps", ">= 0"),
    Row("project_l2-empty", lambda f: threat.project_l2(f.x[:0], f.x[:0], 0.1), "x"),
    Row("step_linf-uint8", lambda f: threat.step_linf(f.y, 0.1), "grad"),
    Row("step_l2-empty", lambda f: threat.step_l2(f.x[:0], 0.1), "grad"),
    Row("random_start_linf-eps", lambda f: threat.random_start_linf(f.x, -0.1), "eps"),
    Row(
        "random_start_l2-eps_nan",
        lambda f: threat.random_start_l2(f.x, torch.full((4, 1, 1, 1), math.nan)),
        "eps",
    ),
    Row("random_start_l2-uint8", lambda f: threat.random_start_l2(f.x.byte(), 0.1), "x"),
    Row(
        "perturbation_norm-norm",
        lambda f: threat.perturbation_norm(f.x, f.x, "l1"),
        "norm",
        "linf",
    ),
    Row("perturbation_norm-shape", lambda f: threat.perturbation_norm(f.x[:1], f.x, "l2"), "x_adv"),
    # data and zoo
    Row("load_toy2d-name", lambda f: data.load_toy2d("moon"), "name", "moons"),
    Row("load_toy2d-n", lambda f: data.load_toy2d(n=1), "n", ">= 2"),
    Row("load_toy2d-noise", lambda f: data.load_toy2d(noise=-0.1), "noise"),
    Row("load_mnist-profile", lambda f: data.load_mnist("fast"), "profile", "quick"),
    Row("load_dataset-name", lambda f: data.load_dataset("svhn"), "name", "cifar10"),
    Row("load_dataset-split", lambda f: data.load_dataset("mnist", "val"), "split", "test"),
    Row("sample_images-size", lambda f: data.sample_images(4), "size", ">= 8"),
    Row(
        "TensorLoader-uint8",
        lambda f: data.TensorLoader((f.x * 255).byte(), f.y),
        "x",
        "x.float() / 255",
    ),
    Row("TensorLoader-nan", lambda f: data.TensorLoader(f.x / 0 - f.x / 0, f.y), "x"),
    Row("TensorLoader-length", lambda f: data.TensorLoader(f.x, f.y[:3]), "y"),
    Row("TensorLoader-batch_size", lambda f: data.TensorLoader(f.x, f.y, 0), "batch_size"),
    Row("zoo.load-name", lambda f: zoo.load("no_such_model"), "name"),
    Row("zoo.load-profile", lambda f: zoo.load(next(iter(zoo.RECIPES)), "slow"), "profile"),
    # viz helpers that take tensors
    Row("image_grid-uint8", lambda f: plots.image_grid((f.x * 255).byte(), f.y), "images"),
    Row("image_grid-labels", lambda f: plots.image_grid(f.x, f.y[:2]), "labels"),
    Row("image_grid-one_image", lambda f: plots.image_grid(f.x[0], f.y[:1]), "images"),
    Row("boundary_grid-image_model", lambda f: plots.boundary_grid(f.cnn, 4), "model"),
    Row(
        "decision_boundary-points",
        lambda f: plots.decision_boundary(plots.boundary_grid(f.toy, 4), f.x, f.y),
        "x",
        "(N, 2)",
    ),
    Row(
        "decision_boundary-float_labels",
        lambda f: plots.decision_boundary(plots.boundary_grid(f.toy, 4), f.pts, f.y.float()),
        "y",
    ),
    # ----- Lipschitz (chapter 1) -----
    *model_rows(
        "pgd_l2_per_sample",
        lambda f, x, y: lip_attacks.pgd_l2_per_sample(f.cnn, x, y, torch.full((4,), 0.5), 1),
        skip=("x_empty", "y_length", "x_one_image"),  # eps (4,) would be the first complaint
    ),
    *model_rows(
        "smallest_adversarial_l2",
        lambda f, x, y: lip_attacks.smallest_adversarial_l2(f.cnn, x, y, 1.0, 1, 0),
    ),
    *model_rows(
        "jacobian_spectral_norm",
        lambda f, x, y: measure.jacobian_spectral_norm(f.cnn, x),
        y_name=None,
    ),
    *model_rows(
        "jacobian_spectral_norm_power",
        lambda f, x, y: measure.jacobian_spectral_norm_power(f.cnn, x, iters=1),
        y_name=None,
    ),
    *model_rows(
        "lipschitz_lower_bound",
        lambda f, x, y: measure.lipschitz_lower_bound(f.cnn, x, steps=1),
        y_name=None,
    ),
    Row(
        "pgd_l2_per_sample-eps_shape",
        lambda f: lip_attacks.pgd_l2_per_sample(f.cnn, f.x, f.y, torch.tensor(0.5)),
        "eps",
        "(4,)",
    ),
    Row(
        "smallest_adversarial_l2-eps_max",
        lambda f: lip_attacks.smallest_adversarial_l2(f.cnn, f.x, f.y, 0.0),
        "eps_max",
    ),
    Row("secant_slopes-interval", lambda f: measure.secant_slopes(torch.sqrt, 1.0, 0.0), "a < b"),
    Row("secant_slopes-a", lambda f: measure.secant_slopes(torch.sqrt, math.nan, 1.0), "a"),
    Row("secant_slopes-n", lambda f: measure.secant_slopes(torch.sqrt, 0.0, 1.0, 1), "n"),
    Row("lipschitz_upper_bound-conv", lambda f: bounds.lipschitz_upper_bound(f.cnn), "layer"),
    Row(
        "lipschitz_upper_bound-not_sequential",
        lambda f: bounds.lipschitz_upper_bound(f.smooth.base_model[1]),
        "model",
    ),
    Row(
        "lipschitz_upper_bound_per_logit-conv",
        lambda f: bounds.lipschitz_upper_bound_per_logit(f.cnn),
        "layer",
    ),
    Row("margin_radius-nan", lambda f: certificates.margin_radius(f.logits / 0, 1.0), "logits"),
    Row("margin_radius-one_logit", lambda f: certificates.margin_radius(f.logits[:, :1], 1), "K"),
    Row("margin_radius-L", lambda f: certificates.margin_radius(f.logits, -1.0), "L", "> 0"),
    Row(
        "margin_radius_per_logit-L_shape",
        lambda f: certificates.margin_radius_per_logit(f.logits, torch.ones(3)),
        "L",
        "(10,)",
    ),
    Row(
        "margin_radius_pairwise-L_shape",
        lambda f: certificates.margin_radius_pairwise(f.logits, torch.ones(10)),
        "L",
        "(10, 10)",
    ),
    Row(
        "margin_radius-empty",
        lambda f: certificates.margin_radius(f.logits[:0], 1.0),
        "logits",
    ),
    # ----- certified defenses (chapter 5) -----
    *model_rows(
        "Smooth.certify_batch",
        lambda f, x, y: f.smooth.certify_batch(x, 10, 20, 0.01),
        y_name=None,
    ),
    *model_rows(
        "Smooth.predict_batch",
        lambda f, x, y: f.smooth.predict_batch(x, 20, 0.01),
        y_name=None,
    ),
    *model_rows(
        "SmoothLaplaceL1.certify_batch",
        lambda f, x, y: f.laplace.certify_batch(x, 10, 20, 0.01),
        y_name=None,
    ),
    *model_rows(
        "smooth_adv",
        lambda f, x, y: soft_smoothing.smooth_adv(f.cnn, x, y, 0.25, 0.5, steps=1, k=2),
    ),
    *model_rows(
        "gaussian_augmentation_loss",
        lambda f, x, y: soft_smoothing.gaussian_augmentation_loss(0.25)(f.cnn, x, y),
        skip=PER_STEP,
    ),
    *model_rows(
        "noise_augmentation_loss",
        lambda f, x, y: soft_smoothing.noise_augmentation_loss(f.laplace)(f.cnn, x, y),
        skip=PER_STEP,
    ),
    *model_rows(
        "macer_loss",
        lambda f, x, y: soft_smoothing.macer_loss(0.25, k=2)(f.cnn, x, y),
        skip=PER_STEP,
    ),
    *model_rows(
        "noisy_logits",
        lambda f, x, y: soft_smoothing.noisy_logits(f.cnn, x, 0.25, 2),
        y_name=None,
        skip=PER_STEP,
    ),
    Row(
        "Smooth.certify-batch",
        lambda f: f.smooth.certify(f.x, 10, 20, 0.01),
        "x",
        "without batch dimension",
    ),
    Row(
        "Smooth.predict-batch",
        lambda f: f.smooth.predict(f.x, 20, 0.01),
        "x",
        "without batch dimension",
    ),
    Row(
        "Smooth.certify-toy_batch",
        lambda f: smoothing.Smooth(f.toy, 2, 0.25).certify(f.pts, 10, 20, 0.01),
        "x",
        "does not fit",
    ),
    Row(
        "Smooth.certify_batch-toy_single",
        lambda f: smoothing.Smooth(f.toy, 2, 0.25).certify_batch(f.pts[0], 10, 20, 0.01),
        "x",
        "(B, ...)",
    ),
    Row(
        "Smooth.certify-uint8",
        lambda f: f.smooth.certify((f.x[0] * 255).byte(), 10, 20, 0.01),
        "x",
        "x.float() / 255",
    ),
    Row("Smooth.certify-n0", lambda f: f.smooth.certify(f.x[0], 0, 20, 0.01), "n0", ">= 1"),
    Row("Smooth.certify-n", lambda f: f.smooth.certify(f.x[0], 10, 0, 0.01), "n", ">= 1"),
    Row("Smooth.certify-alpha", lambda f: f.smooth.certify(f.x[0], 10, 20, 1.0), "alpha", "(0, 1)"),
    Row(
        "Smooth.predict_batch-batch_size",
        lambda f: f.smooth.predict_batch(f.x, 20, 0.01, batch_size=0),
        "batch_size",
    ),
    Row(
        "Smooth.certificate-c_A_float",
        lambda f: f.smooth.certificate(f.y.float(), f.y, 20, 0.01),
        "c_A",
        "int64",
    ),
    Row(
        "Smooth.certificate-c_A_range",
        lambda f: f.smooth.certificate(f.y + 7, f.y, 20, 0.01),
        "c_A",
        "[0, 9]",
    ),
    Row(
        "Smooth.certificate-n_A_shape",
        lambda f: f.smooth.certificate(f.y, f.y[:2], 20, 0.01),
        "n_A",
    ),
    Row(
        "Smooth.certificate-n_A_above_n",
        lambda f: f.smooth.certificate(f.y, f.y + 20, 20, 0.01),
        "n_A",
        "[0, n=20]",
    ),
    Row("Smooth-num_classes", lambda f: smoothing.Smooth(f.cnn, 1, 0.25), "num_classes", ">= 2"),
    Row("Smooth-sigma", lambda f: smoothing.Smooth(f.cnn, 10, 0.0), "sigma", "> 0"),
    Row("SmoothUniformL1-lam", lambda f: noise_shapes.SmoothUniformL1(f.cnn, 10, -1.0), "lam"),
    Row("SmoothLaplaceL1-lam", lambda f: noise_shapes.SmoothLaplaceL1(f.cnn, 10, 0), "lam"),
    Row(
        "clopper_pearson_lower-n_A",
        lambda f: smoothing.clopper_pearson_lower(torch.tensor([11]), 10, 0.01),
        "n_A",
        "[0, n=10]",
    ),
    Row(
        "clopper_pearson_lower-alpha",
        lambda f: smoothing.clopper_pearson_lower(5, 10, 2.0),
        "alpha",
        "(0, 1)",
    ),
    Row("clopper_pearson_lower-n", lambda f: smoothing.clopper_pearson_lower(0, 0, 0.01), "n"),
    Row(
        "clopper_pearson_lower-empty",
        lambda f: smoothing.clopper_pearson_lower(torch.tensor([]), 10, 0.01),
        "n_A",
    ),
    Row(
        "clopper_pearson_upper-n_B",
        lambda f: smoothing.clopper_pearson_upper(-1, 10, 0.01),
        "n_B",
        "[0, n=10]",
    ),
    Row("binomial_test_half-k", lambda f: smoothing.binomial_test_half(5, 3), "k", "k <= m"),
    Row(
        "radius_two_sided-n_B",
        lambda f: smoothing.radius_two_sided(8, 12, 10, 0.01, 0.25),
        "n_B",
    ),
    Row("radius_two_sided-sigma", lambda f: smoothing.radius_two_sided(8, 1, 10, 0.01, 0), "sigma"),
    Row("radius_cap-n", lambda f: smoothing.radius_cap(0.25, 0, 0.01), "n", ">= 1"),
    Row("SoftSmoothed-sigma", lambda f: soft_smoothing.SoftSmoothed(f.cnn, -0.25), "sigma"),
    Row("SoftSmoothed-k", lambda f: soft_smoothing.SoftSmoothed(f.cnn, 0.25, 0), "k", ">= 1"),
    Row(
        "macer_terms-logits_2d",
        lambda f: soft_smoothing.macer_terms(f.logits, f.y, 0.25, 16.0, 8.0),
        "logits",
        "(B, k, K)",
    ),
    Row(
        "macer_terms-y_range",
        lambda f: soft_smoothing.macer_terms(f.logits[:, None], f.y + 7, 0.25, 16.0, 8.0),
        "y",
        "[0, 9]",
    ),
    Row("macer_loss-k", lambda f: soft_smoothing.macer_loss(0.25, k=0), "k"),
    Row(
        "gaussian_augmentation_loss-sigma",
        lambda f: soft_smoothing.gaussian_augmentation_loss(0),
        "sigma",
    ),
    Row(
        "vote_under_attack-classes",
        lambda f: soft_smoothing.vote_under_attack(f.smooth, f.x, f.y + 7, f.radii, k=2),
        "classes",
        "[0, 9]",
    ),
    Row(
        "certified_accuracy-radii_nan",
        lambda f: metrics.certified_accuracy(f.radii / 0 - f.radii / 0, f.correct, [0.0]),
        "radii",
    ),
    Row(
        "certified_accuracy-correct_float",
        lambda f: metrics.certified_accuracy(f.radii, f.correct.float(), [0.0]),
        "correct",
        "bool",
    ),
    Row(
        "certified_accuracy-r_grid",
        lambda f: metrics.certified_accuracy(f.radii, f.correct, [-1.0]),
        "r_grid",
        ">= 0",
    ),
    Row(
        "average_certified_radius-empty",
        lambda f: metrics.average_certified_radius(f.radii[:0], f.correct[:0]),
        "radii",
    ),
    Row(
        "average_certified_radius-shape",
        lambda f: metrics.average_certified_radius(f.radii, f.correct[:2]),
        "correct",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_raises_value_error_naming_the_argument(row: Row, f: SimpleNamespace):
    with pytest.raises(ValueError) as err:
        row.call(f)
    message = str(err.value)
    assert re.search(rf"(?<![\w.]){re.escape(row.name)}(?!\w)", message), message
    if row.accepted is not None:
        assert row.accepted in message, message


def test_ids_are_unique():
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids))


def test_check_fits_leaves_every_mode_and_batchnorm_statistics_alone():
    from course_lib.validate import check_fits

    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(3),
    )
    model(torch.rand(2, 1, 8, 8))  # materialise the lazy layer
    model.train()
    model[1].eval()  # a mixed mode, as after freezing BatchNorm
    stats = model[1].running_mean.clone(), model[1].num_batches_tracked.clone()
    assert check_fits(model, torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])) == 3
    assert [m.training for m in model.modules()] == [True, True, False, True, True]
    assert torch.equal(model[1].running_mean, stats[0])
    assert torch.equal(model[1].num_batches_tracked, stats[1])
    with pytest.raises(ValueError, match=r"y must hold class indices in \[0, 2\]"):
        check_fits(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 3]))
    assert [m.training for m in model.modules()] == [True, True, False, True, True]


def test_check_fits_leaves_the_random_state_alone():
    """A noisy model (here: randomized smoothing's soft classifier) probed by ``check_fits`` must
    not shift the caller's random numbers, so that results match a run without the check."""
    from course_lib.validate import check_fits

    noisy = soft_smoothing.SoftSmoothed(small_cnn().eval(), 0.25, k=2)
    x = torch.full((2, 1, 28, 28), 0.5)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_fits(noisy, x, torch.tensor([0, 1]))
    assert torch.equal(torch.rand(3), expected)


def test_good_input_still_passes(f: SimpleNamespace):
    """The checks must not reject what the chapters pass: batches of float pixels, int64 labels
    of the model's classes, one input (C, H, W) for ``Smooth.certify``."""
    x_adv = attacks.pgd(f.cnn, f.x, f.y, 0.1, steps=2, restarts=2)
    assert threat.perturbation_norm(x_adv, f.x, "linf").max() <= 0.1 + 1e-6
    assert 0 <= train.accuracy(f.cnn, f.x, f.y) <= 1
    prediction, radius = f.smooth.certify(f.x[0], 10, 20, 0.01)
    assert prediction in range(-1, 10) and radius >= 0
    assert smoothing.clopper_pearson_lower(__import__("numpy").int64(5), 10, 0.01).shape == ()
