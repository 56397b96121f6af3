"""Searching for MobileNetV3 (Howard et al., ICCV 2019, arXiv:1905.02244).

Reference: ``keras.applications.MobileNetV3Small`` / ``MobileNetV3Large``;
weights copy across with ``set_weights`` (same layer order) and outputs are
equal. Differences: layer names follow keras_mobile's grammar (every
activation is a named layer), the hard sigmoid of squeeze-excite is
``Activation("hard_sigmoid")`` (keras 3's ``relu6(x + 3) / 6``, the same
function as keras.applications' raw ``ReLU(6)(x + 3) * (1 / 6)``), and the
default input is static 224x224 (keras' default is dynamic).

keras.applications rules reproduced: the stem has 16 filters whatever
``alpha``; the expansion width is ``make_divisible(in * ratio)`` with
keras' ratios (e.g. 72 / 16), the SE width ``make_divisible(expanded / 4)``;
the last conv has ``make_divisible(6 * c)`` filters and the classifier's hidden
conv 1024 (Small) / 1280 (Large), scaled by ``alpha`` only when ``alpha > 1``;
``minimalistic`` uses 3x3 kernels, ReLU and no SE everywhere.
"""

from __future__ import annotations

from typing import NamedTuple

from keras_mobile.blocks import BN, SE, conv_bn, inverted_residual
from keras_mobile.models import _common, _stages
from keras_mobile.registry import register


class Bneck(NamedTuple):
    kernel_size: int
    expand_ratio: float  # expansion width / input width (the paper's "exp size" / in)
    filters: int
    se: bool
    act: str  # "relu" (the paper's RE) or "hard_swish" (HS)
    strides: int


RE, HS = "relu", "hard_swish"
# Tables 1 and 2 of the paper, one row per bneck; a stage (the S of
# block{S}{r}) is a run of rows with the same output width.
STAGES = {
    "large": (  # Table 1    k  exp      c   SE     NL  s
        Bneck(3, 1, 16, False, RE, 1),
        Bneck(3, 4, 24, False, RE, 2),
        Bneck(3, 3, 24, False, RE, 1),
        Bneck(5, 3, 40, True, RE, 2),
        Bneck(5, 3, 40, True, RE, 1),
        Bneck(5, 3, 40, True, RE, 1),
        Bneck(3, 6, 80, False, HS, 2),
        Bneck(3, 2.5, 80, False, HS, 1),
        Bneck(3, 2.3, 80, False, HS, 1),
        Bneck(3, 2.3, 80, False, HS, 1),
        Bneck(3, 6, 112, True, HS, 1),
        Bneck(3, 6, 112, True, HS, 1),
        Bneck(5, 6, 160, True, HS, 2),
        Bneck(5, 6, 160, True, HS, 1),
        Bneck(5, 6, 160, True, HS, 1),
    ),
    "small": (  # Table 2
        Bneck(3, 1, 16, True, RE, 2),
        Bneck(3, 72 / 16, 24, False, RE, 2),
        Bneck(3, 88 / 24, 24, False, RE, 1),
        Bneck(5, 4, 40, True, HS, 2),
        Bneck(5, 6, 40, True, HS, 1),
        Bneck(5, 6, 40, True, HS, 1),
        Bneck(5, 3, 48, True, HS, 1),
        Bneck(5, 3, 48, True, HS, 1),
        Bneck(5, 6, 96, True, HS, 2),
        Bneck(5, 6, 96, True, HS, 1),
        Bneck(5, 6, 96, True, HS, 1),
    ),
}
STEM_FILTERS = 16
LAST_POINT = {"large": 1280, "small": 1024}  # the classifier's hidden 1x1 conv

FAMILY = _common.Family("MobileNetV3", default_size=224, mean=_common.INCEPTION_MEAN,
                        std=_common.INCEPTION_STD)
_BN = BN(1e-3, 0.999)
IMAGENET_ALPHAS = (0.75, 1.0)  # minimalistic: 1.0 only


def minimal(rows):
    """The minimalistic variant of ``rows``: 3x3 kernels, ReLU, no SE."""
    return tuple(row._replace(kernel_size=3, se=False, act=RE) for row in rows)


def _build(args: _common.AppArgs, model_type, alpha, minimalistic, dropout_rate, rows=None):
    """The network of ``rows`` (default: the paper's table of ``model_type``;
    keras_mobile.search passes edited tables)."""
    _common.check_positive("alpha", alpha)
    if not isinstance(minimalistic, bool):
        raise TypeError(f"minimalistic must be True or False. "
                        f"Received: minimalistic={minimalistic!r}.")
    _common.check_rate("dropout_rate", dropout_rate)
    has_imagenet = alpha == 1.0 or (alpha == 0.75 and not minimalistic)
    shape = _common.check_args(
        FAMILY, args, available_weights=("imagenet",) if has_imagenet else (),
        imagenet_note=f"ImageNet weights exist for alpha in {IMAGENET_ALPHAS} "
                      "(minimalistic: 1.0 only); they were trained at 224x224.")
    inputs, x = _common.model_input(args, shape, FAMILY)
    rows = STAGES[model_type] if rows is None else rows
    rows = minimal(rows) if minimalistic else rows
    act = RE if minimalistic else HS
    x = conv_bn(x, STEM_FILTERS, 3, strides=2, bn=_BN, act=act, name="stem")

    def block(x, step):
        row, channels = rows[step.index], x.shape[-1]
        expanded = channels if row.expand_ratio == 1 else _common.make_divisible(
            channels * row.expand_ratio)
        se = SE(_common.make_divisible(expanded * 0.25), RE, "hard_sigmoid") if row.se else None
        return inverted_residual(x, filters=_common.make_divisible(row.filters * alpha),
                                 expanded=None if row.expand_ratio == 1 else expanded,
                                 kernel_size=row.kernel_size, strides=row.strides, act=row.act,
                                 se=se, bn=_BN, name=step.name)

    steps = _stages.plan(_stages.grouped(rows, key=lambda row: row.filters))
    x, stride = _stages.run(x, steps, block)
    x = conv_bn(x, _common.make_divisible(x.shape[-1] * 6), 1, bn=_BN, act=act, name="top")
    x = _common.feature_marker(x, stride)
    last_point = LAST_POINT[model_type]
    last_point = _common.make_divisible(last_point * alpha) if alpha > 1.0 else last_point
    x = _common.head(x, args, dropout=dropout_rate, style="conv", hidden=(last_point, act))
    application = f"MobileNetV3{model_type.capitalize()}"
    return _common.finish(inputs, x, args, default_name=application, family=FAMILY,
                          variant={"application": application, "alpha": alpha,
                                   "minimalistic": minimalistic, "size": shape[0]})


_DOC = """MobileNetV3-{Size} with keras.applications' signature.

    Args:
        input_shape: static ``(height, width, 3)``; default ``(224, 224, 3)``.
        alpha: width multiplier of the blocks (ImageNet weights: 0.75, 1.0;
            minimalistic: 1.0).
        minimalistic: True: 3x3 kernels, ReLU, no squeeze-excite.
        dropout_rate: dropout before the classifier, in [0, 1).
        include_top, weights, input_tensor, classes, pooling,
        classifier_activation, name: as in keras.applications.
        include_preprocessing: True: the model takes raw [0, 255] RGB and scales
            it to [-1, 1] itself; False: feed ``keras_mobile.normalize(x, name)``.

    Example:
        >>> model = keras_mobile.MobileNetV3{Size}(weights=None, classes=10)
"""


def _mobilenet_v3(model_type: str, paper: str, tiny=None):
    def builder(input_shape=None, alpha=1.0, minimalistic=False, include_top=True,
                weights="imagenet", input_tensor=None, classes=1000, pooling=None,
                dropout_rate=0.2, classifier_activation="softmax", include_preprocessing=True,
                name=None):
        return _build(_common.AppArgs(include_top, weights, input_tensor, input_shape, pooling,
                                      classes, classifier_activation, include_preprocessing,
                                      name),
                      model_type, alpha, minimalistic, dropout_rate)

    size = model_type.capitalize()
    return register(FAMILY, paper=paper, name=f"MobileNetV3{size}",
                    doc=_DOC.format(Size=size), tiny=tiny)(builder)


MobileNetV3Small = _mobilenet_v3("small", "2.5M / 56M / 67.4%",
                                 tiny=dict(alpha=0.75, input_shape=(32, 32, 3)))
MobileNetV3Large = _mobilenet_v3("large", "5.4M / 219M / 75.2%")
