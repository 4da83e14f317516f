r"""High-level representation guided denoiser, HGD (Liao, Liang, Dong, Pang, Hu & Zhu, CVPR 2018,
"Defense against Adversarial Attacks Using High-Level Representation Guided Denoiser").

A network :math:`D` is trained to predict the adversarial noise of an image :math:`x^*`, and the
defense classifies the denoised image

.. math::  \hat x = x^* - D(x^*), \qquad \text{deployed model } f(\hat x),

with the classifier :math:`f` fixed (frozen). What changes between the variants is the loss that
trains :math:`D` on pairs (clean :math:`x`, adversarial :math:`x^*`):

.. math::  L_{\text{pixel}} = \|\hat x - x\|_1, \qquad
           L_{\text{FGD}} = \|f_l(\hat x) - f_l(x)\|_1, \qquad
           L_{\text{LGD}} = \|f_{\text{logits}}(\hat x) - f_{\text{logits}}(x)\|_1,

where :math:`f_l` is the response of layer :math:`l` of :math:`f`. A pixel-guided denoiser leaves
a small residual noise that the classifier amplifies layer after layer (the paper's *error
amplification effect*); guiding with a high-level representation penalises exactly the part of
the residual that changes the classifier's features, so the paper settles on FGD/LGD.

Deviations from the reference code (``lfz/Guided-Denoise``, ``Exps/sample/model.py``):

* the U-Net is tiny (three resolutions 28/14/7, 8/16 channels, two 3x3 convolutions per block)
  instead of five levels of 64–256 channels, and has **no BatchNorm**, so the transform is the
  same function in train and eval mode;
* the network's last 1x1 convolution (no bias, as in the reference) outputs the noise estimate
  :math:`D(x^*)` and the transform subtracts it, as the paper writes :math:`\hat x = x^* -
  \hat{dx}`; the reference *adds* its output, which is the same family of functions with the
  sign folded into the last layer;
* the loss is the **mean** absolute difference (the reference's ``torch.abs(...).mean()``), the
  paper's :math:`\|\cdot\|_1` up to a constant;
* the classifier is called with detached copies of its parameters
  (``torch.func.functional_call``), so no gradient ever reaches them and no ``requires_grad``
  flag or ``train()`` mode of the caller's model is touched; the reference passes only the
  denoiser's parameters to the optimizer;
* :math:`\hat x` is **not clamped** to [0, 1] (the reference does not clamp either): the
  classifier receives whatever the denoiser outputs, up to about 0.15 outside [0, 1] on clean
  MNIST digits (printed in notebook 2.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..validate import check_choice, check_pixels, check_tensor

GUIDES = ("pixel", "feature", "logit")


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """Two 3x3 convolutions with ReLU; the first may halve the resolution."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ReLU(),
    )


class UNetDenoiser(nn.Module):
    """The noise predictor :math:`D`: a residual U-Net with two down- and two up-sampling steps.

    Encoder 28 -> 14 -> 7 (strided convolutions), decoder with bilinear up-sampling and the
    encoder's feature map of the same resolution concatenated (skip connections), then a 1x1
    convolution without bias to ``in_channels``: the estimated adversarial noise.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, int] = (8, 16)):
        super().__init__()
        c0, c1 = widths
        self.enc0 = _block(in_channels, c0)  # full resolution
        self.enc1 = _block(c0, c1, stride=2)  # 1/2
        self.enc2 = _block(c1, c1, stride=2)  # 1/4
        self.dec1 = _block(c1 + c1, c1)  # 1/2, after concatenating enc1
        self.dec0 = _block(c1 + c0, c0)  # full, after concatenating enc0
        self.final = nn.Conv2d(c0, in_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = self.enc0(x)  # (B, c0, H, W)
        e1 = self.enc1(e0)  # (B, c1, H/2, W/2)
        e2 = self.enc2(e1)  # (B, c1, H/4, W/4)
        up1 = F.interpolate(e2, size=e1.shape[-2:], mode="bilinear", align_corners=False)
        d1 = self.dec1(torch.cat([up1, e1], 1))  # (B, c1, H/2, W/2)
        up0 = F.interpolate(d1, size=e0.shape[-2:], mode="bilinear", align_corners=False)
        d0 = self.dec0(torch.cat([up0, e0], 1))  # (B, c0, H, W)
        return self.final(d0)  # (B, C, H, W): the noise estimate D(x)


class HGD(nn.Module):
    r"""The denoising transform :math:`\hat x = x^* - D(x^*)`, to be composed with a frozen
    classifier as ``Defended(HGD(D), classifier)``. Deterministic and differentiable: its
    gradient is an ordinary gradient (no BPDA or EOT needed to attack it). Not clamped."""

    def __init__(self, D: nn.Module | None = None):
        super().__init__()
        self.D = UNetDenoiser() if D is None else D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pixels(x, "x")
        return x - self.D(x)  # (B, C, H, W)


def guide_representation(
    classifier: nn.Module, x: torch.Tensor, guide: str, layer: str | None = None
) -> torch.Tensor:
    """The representation :math:`f_l(x)` the loss compares: the image itself (``"pixel"``), the
    output of the classifier's submodule named ``layer`` (``"feature"``, a name from
    ``classifier.named_modules()``, e.g. ``"4"`` in an ``nn.Sequential``) or the logits
    (``"logit"``). The classifier runs with detached parameters: no gradient reaches them."""
    check_choice(guide, "guide", GUIDES)
    if guide == "pixel":
        return x
    named = (*classifier.named_parameters(), *classifier.named_buffers())
    frozen = {k: v.detach() for k, v in named}  # the classifier's state, cut from autograd
    if guide == "logit":
        return functional_call(classifier, frozen, (x,))  # (B, K)
    modules = dict(classifier.named_modules())
    if layer not in modules or layer == "":
        raise ValueError(
            f"layer must name a submodule of the classifier for guide='feature' "
            f"(one of {[n for n in modules if n]}), got {layer!r}"
        )
    found = []
    hook = modules[layer].register_forward_hook(lambda m, i, out: found.append(out))
    try:
        functional_call(classifier, frozen, (x,))
    finally:
        hook.remove()
    return found[0]  # (B, ...) the response of layer l


def hgd_loss(
    denoiser: nn.Module,
    classifier: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    guide: str = "logit",
    layer: str | None = None,
) -> torch.Tensor:
    r"""The guided denoiser loss :math:`\operatorname{mean}|f_l(\hat x) - f_l(x)|`,
    :math:`\hat x = ` ``denoiser(x_adv)`` (an :class:`HGD` transform), for ``guide`` in
    ``"pixel"`` (:math:`f_l` = identity), ``"feature"`` (layer ``layer``) or ``"logit"``.

    Only the denoiser receives gradients; the target :math:`f_l(x)` is computed without any. The
    classifier must be in eval mode (frozen: in train mode BatchNorm would use batch statistics
    and update its running averages); this function never changes its mode.
    """
    check_choice(guide, "guide", GUIDES)
    if classifier.training:
        raise ValueError("classifier must be in eval mode (frozen), got train mode: call .eval()")
    check_pixels(x, "x")
    check_pixels(x_adv, "x_adv")
    check_tensor(x_adv, "x_adv", like=x)
    if guide == "feature" and layer is None:
        raise ValueError("layer must name a submodule of the classifier for guide='feature'")
    x_hat = denoiser(x_adv)  # (B, C, H, W)
    with torch.no_grad():
        target = guide_representation(classifier, x, guide, layer)  # f_l(x)
    return (guide_representation(classifier, x_hat, guide, layer) - target).abs().mean()
