"""MobileNetV2: Inverted Residuals and Linear Bottlenecks (Sandler et al.,
CVPR 2018, arXiv:1801.04381).

Reference: ``keras.applications.MobileNetV2``; weights copy across with
``set_weights`` (same layer order) and outputs are equal. Differences: layer
names follow keras_mobile's grammar, preprocessing is in the model
(``include_preprocessing=True``), and the default input is static 224x224.
"""

from __future__ import annotations

from typing import NamedTuple

from keras_mobile.blocks import BN, conv_bn, inverted_residual
from keras_mobile.models import _common, _stages
from keras_mobile.registry import register


class Stage(NamedTuple):
    expand_ratio: int
    filters: int
    repeats: int
    strides: int
    kernel_size: int = 3


STAGES = (  # Table 2 of the paper:  t    c   n  s
    Stage(1, 16, 1, 1),
    Stage(6, 24, 2, 2),
    Stage(6, 32, 3, 2),
    Stage(6, 64, 4, 2),
    Stage(6, 96, 3, 1),
    Stage(6, 160, 3, 2),
    Stage(6, 320, 1, 1),
)

FAMILY = _common.Family("MobileNetV2", default_size=224, mean=_common.INCEPTION_MEAN,
                        std=_common.INCEPTION_STD)
_BN = BN(1e-3, 0.999)
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
IMAGENET_SIZES = (96, 128, 160, 192, 224)


def _build(args: _common.AppArgs, alpha, stages=STAGES):
    """The network of ``stages`` (default: the paper's Table 2; keras_mobile.search
    passes edited tables)."""
    _common.check_positive("alpha", alpha)
    has_imagenet = alpha in IMAGENET_ALPHAS and _common.square_size(args, FAMILY) in IMAGENET_SIZES
    shape = _common.check_args(
        FAMILY, args, available_weights=("imagenet",) if has_imagenet else (),
        imagenet_note=f"ImageNet weights exist for alpha in {IMAGENET_ALPHAS} at square "
                      f"sizes {IMAGENET_SIZES}.")
    inputs, x = _common.model_input(args, shape, FAMILY)
    x = conv_bn(x, _common.make_divisible(32 * alpha), 3, strides=2, bn=_BN, act="relu6",
                name="stem")

    def block(x, step):
        stage = stages[step.stage]
        expanded = None if stage.expand_ratio == 1 else round(x.shape[-1] * stage.expand_ratio)
        return inverted_residual(x, filters=_common.make_divisible(stage.filters * alpha),
                                 expanded=expanded, kernel_size=stage.kernel_size,
                                 strides=step.strides, act="relu6", bn=_BN, name=step.name)

    x, stride = _stages.run(x, _stages.plan(_stages.repeated(stages)), block)
    last = _common.make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = conv_bn(x, last, 1, bn=_BN, act="relu6", name="top")
    x = _common.feature_marker(x, stride)
    x = _common.head(x, args)
    return _common.finish(inputs, x, args, default_name=f"mobilenetv2_{alpha:0.2f}_{shape[0]}",
                          family=FAMILY, variant=dict(application="MobileNetV2", alpha=alpha,
                                       size=shape[0]))


@register(FAMILY, paper="3.4M / 300M / 72.0%", tiny=dict(alpha=0.35, input_shape=(32, 32, 3)))
def MobileNetV2(input_shape=None, alpha=1.0, include_top=True, weights="imagenet",
                input_tensor=None, pooling=None, classes=1000,
                classifier_activation="softmax", include_preprocessing=True, name=None):
    """MobileNetV2 with keras.applications' signature (+ ``include_preprocessing``).

    Args:
        input_shape: static ``(height, width, 3)``; default ``(224, 224, 3)``.
        alpha: width multiplier (ImageNet weights: 0.35, 0.5, 0.75, 1.0, 1.3, 1.4).
        include_top, weights, input_tensor, pooling, classes,
        classifier_activation, name: as in keras.applications.
        include_preprocessing: True: the model takes raw [0, 255] RGB and scales
            it to [-1, 1] itself; False: feed ``normalize(x)``.

    Example:
        >>> model = keras_mobile.MobileNetV2(weights=None, classes=10)
    """
    return _build(_common.AppArgs(include_top, weights, input_tensor, input_shape, pooling,
                                  classes, classifier_activation, include_preprocessing, name),
                  alpha)
