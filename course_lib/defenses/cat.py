r"""Customized Adversarial Training (CAT; Cheng, Lei, Chen, Dhillon & Hsieh, 2020).

Training points sit at different distances from the decision boundary, yet Madry's AT attacks
every one of them with the same :math:`\varepsilon`. CAT gives each training sample its own budget,
ideally its distance to the boundary.

**Erratum (the definition of** :math:`\varepsilon_i` **).** The lecture writes
:math:`\varepsilon_i = \arg\min_\varepsilon\{\max_{x_i' \in B(x_i, \varepsilon)}
f_\theta(x_i') \neq y_i\}`, which is ill-posed (the argmin of a condition, not of a
function). What is meant is the smallest budget at which an adversarial example exists,

.. math::  \varepsilon_i = \min\big\{\varepsilon \in [0, \varepsilon_{max}] :\ \exists\, x' \in
           B_\infty(x_i, \varepsilon) \cap [0, 1]^d,\ f_\theta(x') \neq y_i\big\}

(:math:`\varepsilon_{max}` if there is none), estimated on the fly: every time sample :math:`i` is
drawn, PGD attacks it at its current :math:`\varepsilon_i`; if the model still classifies it
correctly, its budget grows by :math:`\eta` (never beyond :math:`\varepsilon_{max}`). The model
trains on the adversarial example with an **adaptive label smoothing** that grows with the budget,

.. math::  \tilde y_i = (1 - c\,\varepsilon_i)\, \mathrm{onehot}(y_i) + c\,\varepsilon_i\, u_i,
           \qquad u_i \sim \mathrm{Dirichlet}(\mathbf 1),

so that a point pushed far from its clean version is not forced to a confident label.

The sample index is what ties :math:`\varepsilon_i` to its sample across epochs: iterate over
``TensorLoader(x, torch.arange(n))``, which yields ``(x_batch, indices)``, and pass
:class:`CustomizedAT` as the ``loss_fn`` of :func:`course_lib.train.train_epoch`.

**Deviations from the reference code** (the authors' ``main_adv_cus.py`` and
``attacker/pgd.py``). Its inner attack, ``Linf_PGD_so_cw``, runs in eval mode from the clean
point (no random start) with sign-SGD steps of a fixed learning rate (``Linf_SGD``), minimising
the soft-label log-likelihood :math:`\sum_k \tilde y_{ik} \log \mathrm{softmax}(z_i)_k` (i.e.
maximising the soft-label cross-entropy) plus, with ``cw``, a hinge
:math:`\sum_i \varepsilon_i \max(z_{y_i} - \max_{j \ne y_i} z_j + m, 0)`; the learning rate and
the margin :math:`m` differ between versions of the repository. Ours
(:func:`pgd_per_sample_eps`) maximises the hard-label cross-entropy with steps
:math:`2.5\varepsilon_i/K` from a random start, in the model's current mode, and trains without
the hinge term. The paper's CIFAR-10 settings are :math:`c = 10`,
:math:`\varepsilon_{max} = 8/255`, :math:`\eta = 0.005` (the code's version 2 grows by 0.0025 up
to 0.035); the course's moons recipe (``zoo`` ``moons_cat``) uses :math:`\varepsilon_{max} = 0.10`,
:math:`\eta = 0.005`, :math:`c = 5`, PGD-10. The direction of the :math:`\varepsilon` update: see
:class:`CustomizedAT`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import input_gradient
from ..validate import check_count, check_nonnegative, check_positive


def cat_soft_labels(
    y: torch.Tensor, eps_i: torch.Tensor, num_classes: int, c: float
) -> torch.Tensor:
    r"""CAT's adaptive soft labels :math:`(1 - c\varepsilon_i)\,\mathrm{onehot}(y_i) +
    c\varepsilon_i\,u_i`, :math:`u_i \sim \mathrm{Dir}(\mathbf 1)` (a uniform point of the simplex).
    Rows sum to 1 and are one-hot where :math:`\varepsilon_i = 0`. Needs :math:`\varepsilon_i
    \ge 0`, :math:`c \ge 0` and :math:`c\,\varepsilon_i \le 1` (no clamping). Returns ``(B, K)``."""
    check_nonnegative(c, "c")
    if (eps_i < 0).any():
        raise ValueError(f"eps_i must be >= 0, got a minimum of {float(eps_i.min()):g}")
    if (c * eps_i > 1).any():
        raise ValueError(
            f"c * eps_i must be <= 1 (a valid soft label), got {float((c * eps_i).max()):g}"
        )
    weight = (c * eps_i)[:, None]  # (B, 1)
    u = torch.distributions.Dirichlet(torch.ones(num_classes, device=y.device)).sample(y.shape)
    return (1 - weight) * F.one_hot(y, num_classes).float() + weight * u  # (B, K)


def pgd_per_sample_eps(model, x, y, eps_i, steps, alpha_ratio=2.5):
    r"""ℓ∞ PGD with one radius per sample, ``eps_i`` ``(B,)``, step :math:`2.5\varepsilon_i/K`,
    random start; samples with :math:`\varepsilon_i = 0` stay at ``x``. Needs ``steps >= 1`` and
    every :math:`\varepsilon_i \ge 0`."""
    check_count(steps, "steps", minimum=1)
    if eps_i.shape != x.shape[:1]:
        raise ValueError(f"eps_i must have shape (B,) = ({x.shape[0]},), got {tuple(eps_i.shape)}")
    if (eps_i < 0).any():
        raise ValueError(f"eps_i must be >= 0, got a minimum of {float(eps_i.min()):g}")
    eps = eps_i.view(-1, *([1] * (x.ndim - 1)))  # (B, 1, ..., 1)
    alpha = alpha_ratio * eps / steps
    x_adv = (x + (2 * torch.rand_like(x) - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        grad = input_gradient(model, x_adv, y)  # (B, ...)
        x_adv = torch.min(torch.max(x_adv + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


class CustomizedAT:
    r"""CAT's training loss with its per-sample budgets :math:`\varepsilon_i` (the state kept
    across epochs, in :attr:`eps`, all starting at 0).

    Call it as ``loss_fn(model, x, idx)`` where ``idx`` are the samples' indices into ``y``
    (the labels of the whole training set). Per call: attack each sample at :math:`\varepsilon_i`
    with PGD-``steps``; raise :math:`\varepsilon_i` by ``eta`` (up to ``eps_max``) for the samples
    the attack did not fool; return the soft-label cross-entropy
    :math:`-\frac1B\sum_i \tilde y_i^\top \log \mathrm{softmax}(f(x_i'))`.

    **Erratum (the ε update).** The official code (``main_adv_cus.py``, version 2) adds
    :math:`\eta` to every sampled :math:`\varepsilon_i` before the attack
    (``eps[index] += 0.0025``) and subtracts it again for the samples in the attack's ``mask``
    (``eps[index[mask]] -= 0.0025``), which marks the samples the model still classifies
    correctly after the attack: budgets grow only for the samples that were *fooled*. That is the
    opposite of the paper's idea (the budget should approach each sample's distance to the
    boundary: grow while the sample resists). We implement the paper's direction: grow when the
    attack fails. Other deviations (module docstring): no Carlini-Wagner hinge term in the
    training loss (the code's version 2 adds one), a hard-label cross-entropy PGD with a random
    start for the inner attack (the code: soft-label sign-SGD from the clean point).
    """

    def __init__(
        self, y: torch.Tensor, eps_max: float, eta: float, c: float, steps: int = 10
    ) -> None:
        check_nonnegative(eps_max, "eps_max")
        check_positive(eta, "eta")
        check_nonnegative(c, "c")
        check_count(steps, "steps", minimum=1)
        if c * eps_max > 1:
            raise ValueError(f"c * eps_max must be <= 1 (a valid soft label), got {c * eps_max:g}")
        self.y, self.eps_max, self.eta, self.c, self.steps = y, eps_max, eta, c, steps
        self.num_classes = int(y.max()) + 1
        self.eps = torch.zeros(y.shape[0], device=y.device)  # eps_i of every training sample

    def __call__(self, model: nn.Module, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        y, eps_i = self.y[idx], self.eps[idx]  # (B,), (B,)
        x_adv = pgd_per_sample_eps(model, x, y, eps_i, self.steps)
        with torch.no_grad():
            resisted = model(x_adv).argmax(1) == y  # (B,)
        self.eps[idx] = torch.where(resisted, (eps_i + self.eta).clamp(max=self.eps_max), eps_i)
        soft = cat_soft_labels(y, eps_i, self.num_classes, self.c)  # (B, K)
        return -(soft * F.log_softmax(model(x_adv), dim=1)).sum(1).mean()
