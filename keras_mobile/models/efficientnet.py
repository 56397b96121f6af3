"""EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks
(Tan & Le, ICML 2019, arXiv:1905.11946).

Reference: ``keras.applications.EfficientNetB0`` ... ``B7``; weights copy
across by layer order once keras' ``Normalization`` statistics are skipped
(:func:`keras_mobile.weights.imagenet.copy_keras_application_weights`), and
outputs are equal. Differences: preprocessing is one ``Rescaling`` by the
ImageNet mean/std (``include_preprocessing=True``), which is what keras'
``Rescaling(1/255)`` -> ``Normalization`` -> ``Rescaling(1/sqrt(std))`` computes
with its ImageNet weights (their "variance" holds the standard deviations,
tensorflow/tensorflow#49930); stride-2 convs use ``"same"`` padding (equal to
keras' ``correct_pad`` zero padding + ``"valid"``); the SE squeeze keeps its
spatial dims instead of a ``Reshape``; weights are initialized with Keras'
defaults rather than keras.applications' fan-out variance scaling; the
default input is static at the variant's resolution.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from keras_mobile.blocks import BN, SE, conv_bn, inverted_residual
from keras_mobile.models import _common, _stages
from keras_mobile.registry import register


class Stage(NamedTuple):
    expand_ratio: int
    kernel_size: int
    filters: int
    repeats: int
    strides: int  # of the first block; the others have stride 1


# Table 1 of the paper, stages 2-8 (MBConv{t}); every block has SE with ratio
# 0.25 of its input width, and a skip (with drop path) when its shape is kept.
STAGES = (  # t  k   c   n  s
    Stage(1, 3, 16, 1, 1),
    Stage(6, 3, 24, 2, 2),
    Stage(6, 5, 40, 2, 2),
    Stage(6, 3, 80, 3, 2),
    Stage(6, 5, 112, 3, 1),
    Stage(6, 5, 192, 4, 2),
    Stage(6, 3, 320, 1, 1),
)
STEM_FILTERS, TOP_FILTERS = 32, 1280  # stages 1 and 9, scaled in width like the others


class Variant(NamedTuple):
    width: float
    depth: float
    resolution: int
    dropout: float


VARIANTS = {  # compound coefficients as in keras.applications and the official code
    "B0": Variant(1.0, 1.0, 224, 0.2),
    "B1": Variant(1.0, 1.1, 240, 0.2),
    "B2": Variant(1.1, 1.2, 260, 0.3),
    "B3": Variant(1.2, 1.4, 300, 0.3),
    "B4": Variant(1.4, 1.8, 380, 0.4),
    "B5": Variant(1.6, 2.2, 456, 0.4),
    "B6": Variant(1.8, 2.6, 528, 0.5),
    "B7": Variant(2.0, 3.1, 600, 0.5),
}
FAMILY = _common.Family("EfficientNet", default_size=224)
_BN = BN(1e-3, 0.99)


def scale(stages, width: float, depth: float):
    """Compound scaling: widths ``make_divisible(c * width)``, repeats ``ceil(n * depth)``."""
    return tuple(stage._replace(filters=_common.make_divisible(stage.filters * width),
                                repeats=math.ceil(depth * stage.repeats))
                 for stage in stages)


def _family(variant_name: str) -> _common.Family:
    """The family at the variant's own resolution (B0 224 ... B7 600)."""
    return FAMILY._replace(default_size=VARIANTS[variant_name].resolution)


def _build(args: _common.AppArgs, variant_name, drop_connect_rate):
    _common.check_rate("drop_connect_rate", drop_connect_rate)
    variant = VARIANTS[variant_name]
    family = _family(variant_name)
    has_imagenet = not args.include_top or _common.square_size(args, family) == variant.resolution
    shape = _common.check_args(
        family, args, available_weights=("imagenet",) if has_imagenet else (),
        imagenet_note=f"With include_top=True, keras.applications has EfficientNet{variant_name}"
                      f"'s ImageNet weights at {variant.resolution}x{variant.resolution} only; "
                      "pass include_top=False for other sizes.")
    inputs, x = _common.model_input(args, shape, family)
    stages = scale(STAGES, variant.width, variant.depth)
    x = conv_bn(x, _common.make_divisible(STEM_FILTERS * variant.width), 3, strides=2, bn=_BN,
                act="silu", name="stem")

    def block(x, step):
        stage, channels = stages[step.stage], x.shape[-1]
        return inverted_residual(
            x, filters=stage.filters, kernel_size=stage.kernel_size, strides=step.strides,
            expanded=None if stage.expand_ratio == 1 else channels * stage.expand_ratio,
            act="silu", se=SE(max(1, int(channels * 0.25)), "silu", "sigmoid"), bn=_BN,
            drop_rate=step.drop_rate, name=step.name)

    steps = _stages.plan(_stages.repeated(stages), drop_path_rate=drop_connect_rate)
    x, stride = _stages.run(x, steps, block)
    x = conv_bn(x, _common.make_divisible(TOP_FILTERS * variant.width), 1, bn=_BN, act="silu",
                name="top")
    x = _common.feature_marker(x, stride)
    x = _common.head(x, args, dropout=variant.dropout)
    return _common.finish(inputs, x, args, default_name=f"efficientnet{variant_name.lower()}",
                          family=family, variant={"application": f"EfficientNet{variant_name}",
                                                      "size": shape[0]})


_DOC = """EfficientNet-{v} with keras.applications' signature (+ ``drop_connect_rate``,
    ``include_preprocessing``).

    Width x{w}, depth x{d}, {r}x{r} input, dropout {p} before the classifier.

    Args:
        include_top, weights, input_tensor, pooling, classes,
        classifier_activation, name: as in keras.applications.
        input_shape: static ``(height, width, 3)``; default ``({r}, {r}, 3)``.
        drop_connect_rate: drop path rate of the last block (linearly
            increasing from 0 at the first), in [0, 1).
        include_preprocessing: True: the model takes raw [0, 255] RGB and
            normalizes it by the ImageNet mean/std itself; False: feed
            ``normalize(x)``.

    Example:
        >>> model = keras_mobile.EfficientNet{v}(weights=None, classes=10)
"""


def _efficientnet(variant_name: str, paper: str, tiny=None):
    def builder(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                drop_connect_rate=0.2, include_preprocessing=True, name=None):
        return _build(_common.AppArgs(include_top, weights, input_tensor, input_shape, pooling,
                                      classes, classifier_activation, include_preprocessing,
                                      name),
                      variant_name, drop_connect_rate)

    v = VARIANTS[variant_name]
    doc = _DOC.format(v=variant_name, w=v.width, d=v.depth, r=v.resolution, p=v.dropout)
    return register(_family(variant_name), paper=paper, name=f"EfficientNet{variant_name}",
                    doc=doc, tiny=tiny)(builder)


# Params / FLOPs / top-1 from Table 2 of the paper (arXiv v5).
EfficientNetB0 = _efficientnet("B0", "5.3M / 0.39B / 77.1%", tiny=dict(input_shape=(32, 32, 3)))
EfficientNetB1 = _efficientnet("B1", "7.8M / 0.70B / 79.1%")
EfficientNetB2 = _efficientnet("B2", "9.2M / 1.0B / 80.1%")
EfficientNetB3 = _efficientnet("B3", "12M / 1.8B / 81.6%")
EfficientNetB4 = _efficientnet("B4", "19M / 4.2B / 82.9%")
EfficientNetB5 = _efficientnet("B5", "30M / 9.9B / 83.6%")
EfficientNetB6 = _efficientnet("B6", "43M / 19B / 84.0%")
EfficientNetB7 = _efficientnet("B7", "66M / 37B / 84.3%")
