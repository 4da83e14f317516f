"""Certified defenses: a prediction comes with a radius inside which no attack can change it.

* :mod:`.smoothing`: randomized smoothing (Cohen et al., 2019): PREDICT, CERTIFY, the
  Clopper–Pearson bounds and the radius cap;
* :mod:`.noise_shapes`: other noises and norms (Yang et al., 2020): uniform and Laplace for ℓ1;
* :mod:`.soft_smoothing`: the differentiable (soft) smoothed classifier, Gaussian-augmentation
  and MACER training losses, and the SmoothAdv-style attack on g;
* :mod:`.metrics`: certified accuracy at radius r and average certified radius.

A certifier returns ``(prediction, radius)`` with prediction ``-1`` for abstain and the radius in
input (pixel) units.
"""
