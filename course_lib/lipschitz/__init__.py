"""Lipschitz constants of networks: measuring them, bounding them, certifying with them.

* :mod:`.measure`: local Jacobian norms, sampled lower bounds, secant slopes (chapter 1);
* :mod:`.bounds`: upper bounds as products of layer norms, global, per logit, pairwise (ch. 1);
* :mod:`.certificates`: the margin radii a Lipschitz bound certifies (chapter 1);
* :mod:`.attacks`: the per-sample ℓ2 attacks that test those certificates (chapter 1);
* :mod:`.layer_norms`: spectral norms of dense and conv layers: exact, power, Gram, FFT (ch. 5);
* :mod:`.conv_bounds`: guaranteed norms of real (zero-padded, strided) ``Conv2d`` layers and their
  spectral normalization, so that CNNs get a certificate too (chapter 5);
* :mod:`.constrained`: spectral normalization to a target, GroupSort, Björck layers (ch. 5);
* :mod:`.losses`: hKR and τ-CE for 1-Lipschitz classifiers (chapter 5).

``from course_lib.lipschitz import ...`` reaches the public names of all but :mod:`.attacks`.
"""

from .bounds import (
    layer_lipschitz,
    lipschitz_upper_bound,
    lipschitz_upper_bound_pairwise,
    lipschitz_upper_bound_per_logit,
)
from .certificates import margin_radius, margin_radius_pairwise, margin_radius_per_logit
from .constrained import (
    Bjorck,
    FullSort,
    GroupSort,
    MaxMin,
    SpectralNormalization,
    bjorck,
    bjorck_conv2d,
    bjorck_linear,
    group_sort,
    spectral_normalize,
)
from .conv_bounds import ConvSpectralNormalization, conv_norm_upper, polyphase_kernel
from .layer_norms import (
    conv_norm_bound,
    conv_norm_fft,
    conv_norm_gram,
    conv_norm_power,
    conv_operator_matrix,
    conv_reshaped_bound,
    conv_reshaped_norm,
    conv_spectrum_fft,
    spectral_norm_exact,
    spectral_norm_gram,
    spectral_norm_power,
)
from .losses import hkr_loss, hkr_loss_fn, tau_cross_entropy, tau_cross_entropy_fn
from .measure import (
    jacobian_spectral_norm,
    jacobian_spectral_norm_power,
    lipschitz_lower_bound,
    secant_slopes,
)

__all__ = [
    "Bjorck",
    "ConvSpectralNormalization",
    "FullSort",
    "GroupSort",
    "MaxMin",
    "SpectralNormalization",
    "bjorck",
    "bjorck_conv2d",
    "bjorck_linear",
    "conv_norm_bound",
    "conv_norm_fft",
    "conv_norm_gram",
    "conv_norm_power",
    "conv_norm_upper",
    "conv_operator_matrix",
    "conv_reshaped_bound",
    "conv_reshaped_norm",
    "conv_spectrum_fft",
    "group_sort",
    "hkr_loss",
    "hkr_loss_fn",
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
    "polyphase_kernel",
    "secant_slopes",
    "spectral_norm_exact",
    "spectral_norm_gram",
    "spectral_norm_power",
    "spectral_normalize",
    "tau_cross_entropy",
    "tau_cross_entropy_fn",
]
