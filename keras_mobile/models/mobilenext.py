"""MobileNeXt: Rethinking Bottleneck Structure for Efficient Mobile Network Design
(Zhou et al., ECCV 2020, arXiv:2007.02269).

Reference: the authors' code, ``yitu-opensource/MobileNeXt`` @ 10f7805,
``mobilenext/codebase/models/mnext.py`` (``MXNet``, ``SGBlock``) for
:func:`MobileNeXt` and ``efficient_mnext/model.py`` (``EfficientNet.from_name(
"mnext-b0")``, ``MBConvBlockV1``) for :func:`EfficientNetB0Sandglass`; see
``specs/mobilenext.md``. MobileNeXt-1.0 reproduces the official PyTorch logits
and features (``tests/test_mobilenext.py``); :func:`official_module` maps the
official state dict onto the Keras layers (used by ``keras_mobile.weights``).

The network is the code's, not the paper's uniform block: transition blocks drop
the first depthwise (or both), the bottleneck width is ``floor(in / t)`` with a
``ceil(out / 6)`` floor, the stride sits in the last depthwise, the 960 stage has
3 blocks and the 1280 output is not shrunk for alpha < 1.

Deviations: ``identity_multiplier`` m replaces the code's integer
``identity_div`` (a code edit there): the first ``floor(C * m)`` channels of
the input are added, i.e. ``floor(C / div)`` for ``m = 1 / div``. The
EfficientNet variant's dead ``_bn1`` BatchNorm(1280) (2,560 parameters, never
called) is not built, and its static padding computed for 224 becomes
TensorFlow's "same" (equal at 224). Layer names follow keras_mobile's grammar;
preprocessing is in the model; the default input is static 224x224.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from keras_mobile.blocks import BN, SE, conv_bn, sandglass
from keras_mobile.models import _common, _stages
from keras_mobile.registry import register


class Stage(NamedTuple):
    reduce_ratio: int  # t: the bottleneck is (about) in / t wide
    filters: int
    repeats: int
    strides: int  # first block only; repeats have stride 1
    kernel_size: int = 3
    bottleneck_scale: float = 1.0  # keras_mobile.search: make_divisible(reduced * scale, 8)


STAGES = (  # mnext.py's cfgs (the paper's table, 960 stage n = 3):  t    c   n  s
    Stage(2, 96, 1, 2),
    Stage(6, 144, 1, 1),
    Stage(6, 192, 3, 2),
    Stage(6, 288, 3, 2),
    Stage(6, 384, 4, 1),
    Stage(6, 576, 4, 2),
    Stage(6, 960, 3, 1),
    Stage(6, 1280, 1, 1),
)

B0_STAGES = (  # efficient_mnext "large" blocks_args:  t    c   n  s  k
    Stage(2, 96, 1, 1, 3),
    Stage(6, 144, 1, 2, 3),
    Stage(6, 192, 3, 2, 5),
    Stage(6, 288, 3, 2, 3),
    Stage(6, 384, 4, 1, 5),
    Stage(6, 576, 4, 2, 5),
    Stage(6, 960, 3, 1, 3),
    Stage(6, 1280, 1, 1, 3),
)


class Block(NamedTuple):
    """One resolved sandglass block: its name, widths and shape (spec §1.3)."""

    name: str
    stage: Stage
    inputs: int
    reduced: int
    filters: int
    strides: int  # of the last depthwise (1 when there is none)
    first_dw: bool
    last_dw: bool
    skip: bool
    drop_rate: float


FAMILY = _common.Family("MobileNeXt", default_size=224)
_BN = BN(1e-5, 0.9)  # PyTorch defaults: eps 1e-5, momentum 0.1
_B0_BN = BN(1e-3, 0.99)
# identity_multiplier -> the official checkpoint (keras_mobile.weights.imagenet) at alpha 1.0.
IMAGENET_CHECKPOINTS = {1.0: "1.0", 0.5: "1.0-half-identity"}


def _resolve(stem: int, stages, widths, hidden, *, keep_3x3: bool,
             drop_path_rate: float = 0.0) -> list[Block]:
    """The blocks of ``stages`` with output widths ``widths`` after a ``stem``-wide stem.

    ``hidden(inp, out, t)`` is the bottleneck rule. The block shape follows
    ``SGBlock``'s cases in their order: A (t == 2: both depthwise, stride in the
    last), B (in != out, stride 1: no depthwise), C (in != out, stride 2: last
    depthwise only), D (both depthwise, stride 1, residual). With ``keep_3x3``
    the first block of an n=1, s=1 stage is case D without the residual.
    """
    plan, inp = [], stem
    for step in _stages.plan(_stages.repeated(stages), drop_path_rate=drop_path_rate):
        stage, out, strides = stages[step.stage], widths[step.stage], step.strides
        keep = keep_3x3 and step.repeat == 0 and stage.repeats == 1 and stage.strides == 1
        if stage.reduce_ratio == 2:
            shape = (strides, True, True, False)
        elif inp != out and not keep:
            shape = (strides, False, strides == 2, False)
        else:
            shape = (1, True, True, not keep)
        reduced = hidden(inp, out, stage.reduce_ratio)
        if stage.bottleneck_scale != 1:
            reduced = _common.make_divisible(reduced * stage.bottleneck_scale)
        plan.append(Block(step.name, stage, inp, reduced, out, *shape, step.drop_rate))
        inp = out
    return plan


def _mnext_hidden(inp: int, out: int, t: int) -> int:
    """floor(in / t), raised to make_divisible(ceil(out / 6), 16) when below out / 6."""
    reduced = inp // t
    if reduced < out / 6:
        reduced = _common.make_divisible(math.ceil(out / 6), 16)
    return reduced


def _mnext_plan(stem: int, widths, stages=STAGES) -> list[Block]:
    return _resolve(stem, stages, widths, _mnext_hidden, keep_3x3=True)


def _mnext_widths(alpha: float, stages=STAGES) -> tuple[int, list[int]]:
    """Stem and stage widths: make_divisible(c * alpha, 8), the 1280 kept for alpha < 1."""
    divisor = 4 if alpha == 0.1 else 8  # as in mnext.py
    widths = [1280 if st.filters == 1280 and alpha < 1 else
              _common.make_divisible(st.filters * alpha, divisor) for st in stages]
    return _common.make_divisible(32 * alpha, divisor), widths


def _identity_channels(channels: int, identity_multiplier: float) -> int:
    """floor(C * m), exact for m = 1 / div despite float rounding (e.g. 192 / 3)."""
    return int(channels * identity_multiplier + 1e-9)


def _build(args: _common.AppArgs, alpha, identity_multiplier, stages=STAGES):
    """The network of ``stages`` (default: the official table; keras_mobile.search
    passes edited tables)."""
    _common.check_positive("alpha", alpha)
    _common.check_positive("identity_multiplier", identity_multiplier, upper=1.0)
    checkpoint = IMAGENET_CHECKPOINTS.get(identity_multiplier) if (
        alpha == 1.0 and stages == STAGES and _common.square_size(args, FAMILY) == 224) else None
    shape = _common.check_args(
        FAMILY, args, available_weights=("imagenet",) if checkpoint else (),
        imagenet_note="ImageNet weights exist for alpha 1.0 with identity_multiplier in "
                      f"{tuple(IMAGENET_CHECKPOINTS)} at 224x224 (the official checkpoints).")
    inputs, x = _common.model_input(args, shape, FAMILY)
    stem, widths = _mnext_widths(alpha, stages)
    x = conv_bn(x, stem, 3, strides=2, bn=_BN, act="relu6", padding="symmetric", name="stem")

    def block(x, b: Block):
        return sandglass(x, filters=b.filters, reduced=b.reduced, strides=b.strides,
                         first_dw=b.first_dw, last_dw=b.last_dw, skip=b.skip,
                         identity_channels=_identity_channels(b.filters, identity_multiplier),
                         kernel_size=b.stage.kernel_size, act="relu6", bn=_BN,
                         padding="symmetric", name=b.name)

    x, stride = _stages.run(x, _mnext_plan(stem, widths, stages), block)
    x = _common.feature_marker(x, stride)
    x = _common.head(x, args, dropout=0.2)
    return _common.finish(
        inputs, x, args, default_name=f"mobilenext_{alpha:0.2f}_{shape[0]}", family=FAMILY,
        variant={"alpha": alpha, "identity_multiplier": identity_multiplier, "size": shape[0],
                 "checkpoint": checkpoint})


def _b0_hidden(inp: int, out: int, t: int) -> int:
    """make_divisible(in // t, 2): the code's ``/ 6`` floor compares the width with itself."""
    return _common.make_divisible(inp // t, 2)


def _build_b0(args: _common.AppArgs, drop_connect_rate):
    _common.check_rate("drop_connect_rate", drop_connect_rate)
    shape = _common.check_args(
        FAMILY, args, imagenet_note="keras_mobile has no ImageNet weights for the "
                                    "sandglass EfficientNet-B0.")
    inputs, x = _common.model_input(args, shape, FAMILY)
    x = conv_bn(x, 32, 3, strides=2, bn=_B0_BN, act="silu", padding="same", name="stem")
    plan = _resolve(32, B0_STAGES, [st.filters for st in B0_STAGES], _b0_hidden,
                    keep_3x3=False, drop_path_rate=drop_connect_rate)

    def block(x, b: Block):
        se = SE(max(1, int(b.filters / b.stage.reduce_ratio * 0.25)), act="silu")
        return sandglass(x, filters=b.filters, reduced=b.reduced, strides=b.strides,
                         first_dw=b.first_dw, last_dw=b.last_dw, skip=b.skip,
                         kernel_size=b.stage.kernel_size, act="silu", se=se, bn=_B0_BN,
                         padding="same", drop_rate=b.drop_rate, name=b.name)

    x, stride = _stages.run(x, plan, block)
    x = _common.feature_marker(x, stride)
    x = _common.head(x, args, dropout=0.2)
    return _common.finish(inputs, x, args, default_name=f"efficientnetb0_sandglass_{shape[0]}",
                          family=FAMILY, variant={"size": shape[0]})


@register(FAMILY, paper="3.5M / 300M / 74.0%", tiny=dict(alpha=0.35, input_shape=(32, 32, 3)))
def MobileNeXt(input_shape=None, alpha=1.0, identity_multiplier=1.0, include_top=True,
               weights="imagenet", input_tensor=None, pooling=None, classes=1000,
               classifier_activation="softmax", include_preprocessing=True, name=None):
    """MobileNeXt (the official ``MXNet``) with keras.applications' signature.

    Args:
        input_shape: static ``(height, width, 3)``; default ``(224, 224, 3)``.
        alpha: width multiplier (paper: 0.35, 0.5, 0.75, 1.0, 1.4; any positive value).
        identity_multiplier: in (0, 1]; the residual adds the first
            ``floor(C * identity_multiplier)`` input channels (paper: 1, 1/2, 1/3, 1/6).
        include_top, weights, input_tensor, pooling, classes,
        classifier_activation, name: as in keras.applications. ImageNet weights:
            alpha 1.0, identity_multiplier 1.0 or 0.5, 224x224.
        include_preprocessing: True: the model takes raw [0, 255] RGB and applies
            the ImageNet mean/std itself; False: feed ``_common.normalize(x)``.

    Example:
        >>> model = keras_mobile.MobileNeXt(alpha=0.75, weights=None, classes=10)
    """
    return _build(_common.AppArgs(include_top, weights, input_tensor, input_shape, pooling,
                                  classes, classifier_activation, include_preprocessing, name),
                  alpha, identity_multiplier)


@register(FAMILY, paper="3.94M / 330M / 76.05%")
def EfficientNetB0Sandglass(include_top=True, weights=None, input_tensor=None,
                            input_shape=None, pooling=None, classes=1000,
                            classifier_activation="softmax", include_preprocessing=True,
                            name=None, *, drop_connect_rate=0.2):
    """EfficientNet-B0 built from sandglass blocks with SE and Swish (paper's MobileNeXt†-1.0).

    The official ``mnext-b0``; keras_mobile has no ImageNet weights for it.

    Args:
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name: as in keras.applications.EfficientNetB0.
        include_preprocessing: True: raw [0, 255] RGB in, ImageNet mean/std in the model.
        drop_connect_rate: stochastic depth of the residual branches, growing
            linearly from 0 over the 20 blocks.

    Example:
        >>> model = keras_mobile.EfficientNetB0Sandglass(classes=10)
    """
    return _build_b0(_common.AppArgs(include_top, weights, input_tensor, input_shape, pooling,
                                     classes, classifier_activation, include_preprocessing,
                                     name),
                     drop_connect_rate)


# Position of each part's conv in SGBlock.conv for cases A and D (its BN follows);
# blocks without the first depthwise (B, C) hold the same parts 3 positions earlier.
_OFFICIAL_POSITIONS = {"dw1": 0, "reduce": 3, "expand": 5, "dw2": 8}


def _has_first_dw(layer, scope: str) -> bool:
    """Whether block ``scope`` (holding ``layer``) starts with a depthwise: walk back
    through the block's layers to its input."""
    while layer.name.startswith(f"{scope}_"):
        if layer.name == f"{scope}_dw1_conv":
            return True
        if isinstance(layer.input, (list, tuple)):  # a merge: not a sandglass block's start
            return False
        layer = layer.input._keras_history.operation
    return False


def official_module(layer) -> str | None:
    """The official ``MXNet`` module holding ``layer``'s weights (``features.3.conv.1``),
    or None for a layer without official weights; used by ``keras_mobile.weights``."""
    if layer.name == "predictions":
        return "classifier.1"
    match = re.fullmatch(r"(stem|block(\d+)([a-z]))_(?:(dw1|reduce|expand|dw2)_)?(conv|bn)",
                         layer.name)
    if match is None or (match[1] == "stem") == bool(match[4]):
        return None
    scope, stage, repeat, part, kind = match.groups()
    bn = int(kind == "bn")
    if scope == "stem":
        return f"features.0.{bn}"
    index = sum(st.repeats for st in STAGES[: int(stage) - 1]) + ord(repeat) - 96
    position = _OFFICIAL_POSITIONS[part] - (0 if _has_first_dw(layer, scope) else 3)
    return f"features.{index}.conv.{position + bn}"
