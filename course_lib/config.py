"""Device, seeding and the two profiles of the course.

Every number that differs between a laptop run (``quick``) and a paper-scale GPU run (``full``)
lives in :data:`SETTINGS`; notebooks read them through :func:`settings`, never as literals.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

PROFILES = ("quick", "full")

# One place for every profile-dependent number the chapters use.
SETTINGS: dict[str, dict] = {
    "quick": {
        "toy_n": 400,  # points in a 2-D toy set
        "eval_n": 200,  # test images used for attack curves
        "pgd_steps": 10,
        "pgd_restarts": 2,
        "batch_size": 256,
        "sweep_images": 6,  # digits in the plotly epsilon sweep
        # randomized smoothing (chapter 5): selection / estimation samples, test images
        "smooth_n0": 100,
        "smooth_n": 1_000,
        "smooth_images": 100,
        "smooth_batch": 2_000,
        # chapter 4 (regularization): evaluation digits, PGD for the tables, landscapes, curvature
        "reg_eval_n": 500,
        "reg_pgd_steps": 20,
        "reg_pgd_restarts": 2,
        "landscape_resolution": 101,
        "curvature_digits": 25,
        "curvature_iters": 10,
        "reg_worst_n": 100,  # digits for 4.3's worst-case column (APGD-CE then APGD-T)
        # chapter 5 part 2 (Lipschitz nets): random kernels in the norm table, digits certified,
        # soundness attack (l2 PGD on the margin inside 0.999 r): images, steps, restarts
        "lip_kernels": 12,
        "lip_images": 1_000,
        "lip_attack_images": 200,
        "lip_attack_steps": 30,
        "lip_attack_restarts": 3,
        # chapter 3: digits for the clean / PGD / APGD worst-case tables, APGD steps and the
        # target classes of APGD-T (AutoAttack uses 9; 3 keeps the quick notebooks in budget)
        "at_eval_n": 200,
        "apgd_steps": 100,
        "apgd_targets": 3,
        # chapter 2 (naive defenses): digits per evaluation, attack budgets, EOT draws
        "naive_eval_n": 100,
        "naive_eps": (0.05, 0.1, 0.2, 0.3),
        "naive_eot": 8,  # EOT draws per step for random resize-and-pad
        "naive_tv_eot": 2,  # EOT draws per step for TV (each draw is a full TV solve)
        "naive_sanity_n": 50,
        "naive_keys": 4,  # keyed classifiers in the diversified ensemble
        # notebook 5.7 (GloRo, top-k): test digits certified, toy pairs for the global property,
        # soundness attack (l2 PGD on the margin inside 0.999 r and inside eps): steps, restarts
        "gloro_images": 1_000,
        "gloro_pairs": 200_000,
        "gloro_attack_steps": 30,
        "gloro_attack_restarts": 3,
        # chapter 5 part 3, 10_mmcert: digits certified, selection / estimation sub-samples,
        # soundness attack (digits, random-search tries, sub-samples per try, final estimate),
        # repetitions of the coverage simulation
        "mmcert_images": 100,
        "mmcert_n0": 32,
        "mmcert_n": 256,
        "mmcert_attack_images": 40,
        "mmcert_attack_tries": 32,
        "mmcert_attack_samples": 32,
        "mmcert_attack_final": 1_000,
        "mmcert_coverage_reps": 2_000,
        # chapter 5 part 3, 11_limits: test digits certified by every family, digits per soundness
        # attack, random MLPs per depth in the looseness plot
        "limits_images": 200,
        "limits_attack_images": 50,
        "limits_depth_seeds": 3,
        # chapter 3 robust overfitting / generated data (3.6): fresh test digits for best vs last
        # and for the amounts of generated data; conditional samples checked by the teacher
        "ro_eval_n": 200,
        "ro_agree_n": 1_000,
        # chapter 2 HGD: denoiser training (PGD steps of the training pairs, epochs, Adam's lr)
        "hgd_pgd_steps": 10,
        "hgd_epochs": 3,
        "hgd_lr": 2e-3,
        # chapter 5.2 CNNs: training epochs of the Lipschitz CNNs (baseline, SN, Björck), digits
        # whose certificates the soundness attack tests per CNN
        "lip_cnn_epochs": 4,
        "lip_cnn_attack_images": 50,
        # chapter 3 LAS-AT/FAT/CAT MNIST: training digits per class in FAT's feature projection
        "fat_feature_digits": 150,
    },
    "full": {
        "toy_n": 2000,
        "eval_n": 10000,
        "pgd_steps": 100,
        "pgd_restarts": 5,
        "batch_size": 512,
        "sweep_images": 10,
        "smooth_n0": 100,
        "smooth_n": 100_000,  # the paper's N
        "smooth_images": 500,  # the paper certifies 500 test images
        "smooth_batch": 1_000,
        # chapter 4
        "reg_eval_n": 10_000,
        "reg_pgd_steps": 100,
        "reg_pgd_restarts": 5,
        "landscape_resolution": 101,
        "curvature_digits": 500,
        "curvature_iters": 30,
        "reg_worst_n": 1000,
        # chapter 5 part 2
        "lip_kernels": 50,
        "lip_images": 10_000,
        "lip_attack_images": 1_000,
        "lip_attack_steps": 100,
        "lip_attack_restarts": 10,
        # chapter 3
        "at_eval_n": 1000,
        "apgd_steps": 100,
        "apgd_targets": 9,
        # chapter 2 (naive defenses)
        "naive_eval_n": 1000,
        "naive_eps": (0.05, 0.1, 0.2, 0.3),
        "naive_eot": 30,  # Athalye et al.'s 30 draws per step
        "naive_tv_eot": 10,
        "naive_sanity_n": 500,
        "naive_keys": 6,
        # notebook 5.7 (GloRo, top-k)
        "gloro_images": 10_000,
        "gloro_pairs": 1_000_000,
        "gloro_attack_steps": 100,
        "gloro_attack_restarts": 10,
        # chapter 5 part 3, 10_mmcert
        "mmcert_images": 500,
        "mmcert_n0": 100,
        "mmcert_n": 10_000,
        "mmcert_attack_images": 200,
        "mmcert_attack_tries": 200,
        "mmcert_attack_samples": 100,
        "mmcert_attack_final": 10_000,
        "mmcert_coverage_reps": 10_000,
        # chapter 5 part 3, 11_limits
        "limits_images": 500,
        "limits_attack_images": 200,
        "limits_depth_seeds": 5,
        # chapter 3 robust overfitting / generated data (3.6)
        "ro_eval_n": 1_000,
        "ro_agree_n": 10_000,
        # chapter 2 HGD
        "hgd_pgd_steps": 40,
        "hgd_epochs": 20,
        "hgd_lr": 2e-3,
        # chapter 5.2 CNNs
        "lip_cnn_epochs": 10,
        "lip_cnn_attack_images": 1_000,
        # chapter 3 LAS-AT/FAT/CAT MNIST
        "fat_feature_digits": 1000,
    },
}


def device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def profile() -> str:
    """The active profile: ``$COURSE_PROFILE``, else ``full`` with CUDA and ``quick`` without."""
    value = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if not value:
        return "full" if torch.cuda.is_available() else "quick"
    if value not in PROFILES:
        raise ValueError(
            f"COURSE_PROFILE must be one of {PROFILES} (or unset), "
            f"got {os.environ['COURSE_PROFILE']!r}"
        )
    return value


def settings(name: str | None = None) -> dict:
    """A copy of the settings of profile ``name`` (default: the active profile)."""
    name = profile() if name is None else name
    if name not in SETTINGS:
        raise ValueError(f"profile must be one of {PROFILES}, got {name!r}")
    return dict(SETTINGS[name])


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices) so that a notebook reruns identically."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the legacy global generator students may use)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators


@contextmanager
def isolated_rng(seed: int = 0):
    """Seed every generator inside the block and restore all of them afterwards.

    Code around the block sees the same random numbers whether the block ran or not: loading a
    cached model and training it leave a notebook's later draws identical.
    """
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


def setup(seed: int = 0, quiet: bool = False) -> dict:
    """First cell of every notebook: seed, plotting defaults, plotly renderer; print where we run.

    The plotly renderer works in JupyterLab (plotly's MIME type) and on the Jupyter Book site.

    Returns the active profile's settings so that a notebook can write ``S = setup()``.
    """
    seed_everything(seed)
    _plot_defaults()
    info = {"device": str(device()), "profile": profile(), "torch": torch.__version__}
    if not quiet:
        print(
            f"course_lib: device={info['device']} profile={info['profile']} torch={info['torch']}"
        )
    return settings()


def _plot_defaults() -> None:
    import sys

    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (6.0, 4.0),
            "figure.dpi": 80,
            "savefig.dpi": 80,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "image.cmap": "gray",
        }
    )
    # plotly imports nbformat -> jsonschema, whose optional IRI checker (rfc3987_syntax) compiles a
    # grammar for ~3 s at import. A kernel never validates IRIs, so we skip that optional module.
    sys.modules.setdefault("rfc3987_syntax", None)
    import plotly.io as pio

    pio.templates.default = "plotly_white"
    pio.renderers["course"] = _course_renderer()
    pio.renderers.default = "course"


def _course_renderer():
    """Plotly's JSON for JupyterLab and VS Code, plus a plain ``<div>`` for static HTML.

    The HTML part does not embed or fetch plotly.js: the course site serves one copy of it
    (``_ext/plotly_js.py``), so pages stay small and work offline.
    """
    import plotly.io as pio
    from plotly.io._base_renderers import MimetypeRenderer

    class CourseRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig_dict)
            html = pio.to_html(fig_dict, include_plotlyjs=False, full_html=False, validate=False)
            return {**bundle, "text/html": html}

    return CourseRenderer()


def cache_dir() -> Path:
    """Where downloaded data and trained zoo models live (git-ignored, never committed).

    ``$COURSE_CACHE`` if set; else ``datasets/cache`` of the repository this package sits in; else
    ``~/.cache/course_lib`` (for a non-editable install).
    """
    if os.environ.get("COURSE_CACHE"):
        return Path(os.environ["COURSE_CACHE"]).expanduser()
    repo_datasets = Path(__file__).resolve().parents[1] / "datasets"
    if repo_datasets.is_dir():
        return repo_datasets / "cache"
    return Path.home() / ".cache" / "course_lib"
