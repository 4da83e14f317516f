"""Lipschitz constants of networks: measuring them, bounding them, certifying with them.

* :mod:`.measure`: local Jacobian norms, sampled lower bounds, secant slopes (chapter 1);
* :mod:`.bounds`: upper bounds as products of layer norms, global, per logit, pairwise (ch. 1);
* :mod:`.certificates`: the margin radii a Lipschitz bound certifies (chapter 1);
* :mod:`.attacks`: the per-sample ℓ2 attacks that test those certificates (chapter 1).

``from course_lib.lipschitz import ...`` reaches the public names of the first three.
"""

from .bounds import (
    layer_lipschitz,
    lipschitz_upper_bound,
    lipschitz_upper_bound_pairwise,
    lipschitz_upper_bound_per_logit,
)
from .certificates import margin_radius, margin_radius_pairwise, margin_radius_per_logit
from .measure import (
    jacobian_spectral_norm,
    jacobian_spectral_norm_power,
    lipschitz_lower_bound,
    secant_slopes,
)

__all__ = [
    "jacobian_spectral_norm",
    "jacobian_spectral_norm_power",
    "layer_lipschitz",
    "lipschitz_lower_bound",
    "lipschitz_upper_bound",
    "lipschitz_upper_bound_pairwise",
    "lipschitz_upper_bound_per_logit",
    "margin_radius",
    "margin_radius_pairwise",
    "margin_radius_per_logit",
    "secant_slopes",
]
