"""Defenses, one module per family (chapters 2–4).

* pre-processing transforms (chapter 2): ``transform(x) -> x'`` on batched [0, 1] images, wrapped
  around a classifier by :class:`Defended`: :mod:`.tv` (Guo et al. 2018), :mod:`.randomization`
  (Xie et al. 2018), :mod:`.deflection` (Prakash et al. 2018); keyed ensembles in
  :mod:`.diversification` (Taran et al. 2019);
* training defenses (chapters 3–4): ``loss_fn(model, x, y) -> scalar`` factories for
  :func:`course_lib.train.train_epoch`.
"""

from .defended import Defended, shattered

__all__ = ["Defended", "shattered"]
