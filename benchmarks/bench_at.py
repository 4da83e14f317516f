"""Chapter 3 against its peers, same model, data and settings, in one run:

* ``course_lib.apgd.apgd`` (CE and DLR) against torchattacks' ``APGD`` at equal steps (100) on the
  adversarially trained small CNN (target: ratio <= 1.1; ``apgd_targeted`` runs the same loop);
* one PGD-AT epoch (``train_epoch`` + ``pgd_at_loss``, PGD-10) against ART's
  ``AdversarialTrainerMadryPGD`` (one epoch, same PGD-10, batch size and optimizer; target: < 1).

The two sides run alternately, swapping which goes first, and the medians are compared (ratio
course_lib / peer, below 1 is faster).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torchattacks
from torch import nn

from course_lib import zoo
from course_lib.apgd import apgd
from course_lib.config import seed_everything
from course_lib.data import TensorLoader, load_mnist5k
from course_lib.models import small_cnn
from course_lib.train import pgd_at_loss, train_epoch


def _alternate(ours, theirs, repeats):
    for fn in (ours, theirs):  # warm-up
        fn()
    t_ours, t_theirs = [], []
    for i in range(repeats):
        pair = ((ours, t_ours), (theirs, t_theirs))
        for fn, times in pair if i % 2 else pair[::-1]:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(t_ours), statistics.median(t_theirs)


def bench_apgd(n=100, steps=100, repeats=3) -> list[dict]:
    seed_everything(0)
    model = zoo.load("mnist_pgd_at", device="cpu")
    data = load_mnist5k()
    x, y = data.x_test[:n], data.y_test[:n]
    rows = []
    for loss in ("ce", "dlr"):
        name = f"APGD-{loss.upper()}"
        ours = lambda loss=loss: apgd(model, x, y, 0.3, loss=loss, steps=steps)  # noqa: E731
        peer = torchattacks.APGD(model, eps=0.3, steps=steps, loss=loss)
        m_ours, m_theirs = _alternate(ours, lambda p=peer: p(x, y), repeats)
        rows.append(
            {
                "case": f"{name}-{steps}, mnist_pgd_at, {n} digits",
                "peer": f"torchattacks {torchattacks.__version__} {type(peer).__name__}",
                "course_lib_ms": 1000 * m_ours,
                "peer_ms": 1000 * m_theirs,
                "ratio": m_ours / m_theirs,
            }
        )
    return rows


def bench_pgd_at_epoch(n=256, batch=64, steps=10, repeats=3) -> dict:
    from art.defences.trainer import AdversarialTrainerMadryPGD
    from art.estimators.classification import PyTorchClassifier

    data = load_mnist5k()
    x, y = data.x_train[:n], data.y_train[:n]
    eps, alpha = 0.3, 0.03
    seed_everything(0)
    ours_model = small_cnn()
    ours_opt = torch.optim.Adam(ours_model.parameters(), lr=1e-3)
    loader = TensorLoader(x, y, batch_size=batch)
    loss = pgd_at_loss(eps, alpha=alpha, steps=steps)
    art_model = small_cnn()
    classifier = PyTorchClassifier(
        model=art_model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(art_model.parameters(), lr=1e-3),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    trainer = AdversarialTrainerMadryPGD(
        classifier, nb_epochs=1, batch_size=batch, eps=eps, eps_step=alpha, max_iter=steps
    )
    trainer.attack.set_params(verbose=False)
    x_np, y_np = x.numpy(), np.eye(10, dtype=np.float32)[y.numpy()]
    m_ours, m_theirs = _alternate(
        lambda: train_epoch(ours_model, loader, loss, ours_opt),
        lambda: trainer.fit(x_np, y_np),
        repeats,
    )
    import art

    return {
        "case": f"PGD-AT epoch, PGD-{steps}, {n} digits, batch {batch}",
        "peer": f"ART {art.__version__} AdversarialTrainerMadryPGD",
        "course_lib_ms": 1000 * m_ours,
        "peer_ms": 1000 * m_theirs,
        "ratio": m_ours / m_theirs,
    }


def run() -> list[dict]:
    return [*bench_apgd(), bench_pgd_at_epoch()]


if __name__ == "__main__":
    for row in run():
        print(row)
