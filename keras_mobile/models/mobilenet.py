"""MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications (Howard et al., 2017, arXiv:1704.04861).

Reference: ``keras.applications.MobileNet``; weights copy across with
``set_weights`` (same layer order) and outputs are equal. Differences: layer
names follow keras_mobile's grammar, preprocessing is in the model
(``include_preprocessing=True``, [0, 255] -> [-1, 1]), and the default input is
static 224x224. As in keras (and unlike V2/V3), widths are ``int(c * alpha)``,
not rounded to a multiple of 8. Stride-2 depthwise convs use TensorFlow's
``"same"`` padding, which equals keras' ``ZeroPadding2D(((0, 1), (0, 1)))`` +
``"valid"`` on even feature maps (every size the ImageNet weights exist for);
on odd maps keras' output is one pixel smaller.
"""

from __future__ import annotations

from typing import NamedTuple

from keras_mobile.blocks import BN, conv_bn
from keras_mobile.models import _common, _stages
from keras_mobile.registry import register


class Stage(NamedTuple):
    filters: int
    repeats: int
    strides: int  # of the first block; the others have stride 1


# Table 1 of the paper, one row per output width (each block: 3x3 depthwise,
# then 1x1 pointwise). The paper's last "Conv dw / s2" maps 7x7 to 7x7: it has
# stride 1, as in keras and the TF-slim code.
STAGES = (  #  c   n  s
    Stage(64, 1, 1),
    Stage(128, 2, 2),
    Stage(256, 2, 2),
    Stage(512, 6, 2),
    Stage(1024, 2, 2),
)
STEM_FILTERS = 32

FAMILY = _common.Family("MobileNet", default_size=224, mean=_common.INCEPTION_MEAN,
                        std=_common.INCEPTION_STD)
_BN = BN(1e-3, 0.99)
IMAGENET_ALPHAS = (0.25, 0.5, 0.75, 1.0)
IMAGENET_SIZES = (128, 160, 192, 224)


def _separable(x, *, filters: int, strides: int, depth_multiplier: int, name: str):
    """3x3 depthwise (BN, ReLU6) -> 1x1 pointwise (BN, ReLU6), the paper's Figure 3.

    Parts: ``dw_conv/bn/act``, ``project_conv/bn/act`` (the pointwise conv).
    """
    x = conv_bn(x, None, 3, strides=strides, depthwise=True, depth_multiplier=depth_multiplier,
                bn=_BN, act="relu6", name=f"{name}_dw")
    return conv_bn(x, filters, 1, bn=_BN, act="relu6", name=f"{name}_project")


def _build(args: _common.AppArgs, alpha, depth_multiplier, dropout):
    _common.check_positive("alpha", alpha)
    _common.check_positive("depth_multiplier", depth_multiplier, integer=True)
    _common.check_rate("dropout", dropout)
    has_imagenet = alpha in IMAGENET_ALPHAS and depth_multiplier == 1 and (
        _common.square_size(args, FAMILY) in IMAGENET_SIZES)
    shape = _common.check_args(
        FAMILY, args, available_weights=("imagenet",) if has_imagenet else (),
        imagenet_note=f"ImageNet weights exist for alpha in {IMAGENET_ALPHAS} with "
                      f"depth_multiplier=1 at square sizes {IMAGENET_SIZES}.")
    inputs, x = _common.model_input(args, shape, FAMILY)
    x = conv_bn(x, int(STEM_FILTERS * alpha), 3, strides=2, bn=_BN, act="relu6", name="stem")

    def block(x, step):
        return _separable(x, filters=int(STAGES[step.stage].filters * alpha),
                          strides=step.strides, depth_multiplier=depth_multiplier,
                          name=step.name)

    x, stride = _stages.run(x, _stages.plan(_stages.repeated(STAGES)), block)
    x = _common.feature_marker(x, stride)
    x = _common.head(x, args, dropout=dropout, style="conv")
    return _common.finish(inputs, x, args, default_name=f"mobilenet_{alpha:0.2f}_{shape[0]}",
                          family=FAMILY, variant={"application": "MobileNet", "alpha": alpha,
                                                      "depth_multiplier": depth_multiplier,
                                                      "size": shape[0]})


@register(FAMILY, paper="4.2M / 569M / 70.6%", tiny=dict(alpha=0.25, input_shape=(32, 32, 3)))
def MobileNet(input_shape=None, alpha=1.0, depth_multiplier=1, dropout=1e-3, include_top=True,
              weights="imagenet", input_tensor=None, pooling=None, classes=1000,
              classifier_activation="softmax", include_preprocessing=True, name=None):
    """MobileNet (V1) with keras.applications' signature (+ ``include_preprocessing``).

    Args:
        input_shape: static ``(height, width, 3)``; default ``(224, 224, 3)``.
        alpha: width multiplier (ImageNet weights: 0.25, 0.5, 0.75, 1.0).
        depth_multiplier: channel multiplier of the depthwise convs, a positive
            integer (ImageNet weights: 1). The paper's "resolution multiplier"
            is the input size.
        dropout: dropout rate before the classifier, in [0, 1).
        include_top, weights, input_tensor, pooling, classes,
        classifier_activation, name: as in keras.applications.
        include_preprocessing: True: the model takes raw [0, 255] RGB and scales
            it to [-1, 1] itself; False: feed ``normalize(x)``.

    Example:
        >>> model = keras_mobile.MobileNet(alpha=0.5, weights=None, classes=10)
    """
    return _build(_common.AppArgs(include_top, weights, input_tensor, input_shape, pooling,
                                  classes, classifier_activation, include_preprocessing, name),
                  alpha, depth_multiplier, dropout)
