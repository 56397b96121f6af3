"""EMO: Rethinking Mobile Block for Efficient Attention-based Models (Zhang et
al., ICCV 2023, arXiv:2301.01146).

Reference: github.com/zhangzjn/EMO ``model/emo.py`` at 27d9b40, as the code runs
(``../shared/specs/emo.md``): ``attn_pre=True`` as in every official factory,
*interleaved* windows, zero padding right/bottom after the norm, no mask,
BN/LN eps 1e-6, exact GELU, symmetric padding. Deviations, both exact:

* windows are folded into the batch with rank-4 reshapes/transposes only
  (:func:`keras_mobile.layers.window_partition`), so TFLite sees no 5-D/6-D
  tensor;
* with ``attn_pre=True`` the expansion ``v`` runs after cropping the padded
  tokens (it is a 1x1 conv, so the kept tokens are identical and the padded
  ones, which the official code discards, are never computed).

EMO-10M and EMO-20M are not in the official code: depths, widths and ratios are
the paper's Table 13, the rest is a measured choice (see ``VARIANTS``); no weights.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np

from keras_mobile.blocks import BN, SE, Attention, conv_bn, irmb, normalization
from keras_mobile.models import _common, _stages
from keras_mobile.registry import register


class Stage(NamedTuple):
    norm: str  # the input norm of every block of the stage, downsampling block included
    act: str  # activation of the expansion ``v`` (the depthwise conv always uses SiLU)
    kernel_size: int
    attention: bool  # regular blocks only; downsampling blocks never attend


STAGES = (
    Stage("bn", "silu", 3, False),
    Stage("bn", "silu", 3, False),
    Stage("ln", "gelu", 5, True),
    Stage("ln", "gelu", 5, True),
)


STEM_WIDTH = 24  # every official factory (EMO_1M ... EMO_6M)


class Variant(NamedTuple):
    depths: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    expand_ratios: tuple[float, float, float, float]  # regular blocks; downsampling uses 2x
    head_dims: tuple[int, int, int, int]  # attention stages only
    drop_path_rate: float
    stem_width: int = STEM_WIDTH


VARIANTS = {  # specs/emo.md §4 (official factories EMO_1M ... EMO_6M)
    "1M": Variant((2, 2, 8, 3), (32, 48, 80, 168), (2, 2.5, 3, 3.5), (16, 16, 20, 21), 0.04036),
    "2M": Variant((3, 3, 9, 3), (32, 48, 120, 200), (2, 2.5, 3, 3.5), (16, 16, 20, 20), 0.05),
    "5M": Variant((3, 3, 9, 3), (48, 72, 160, 288), (2, 3, 4, 4), (24, 24, 32, 32), 0.05),
    "6M": Variant((3, 3, 9, 3), (48, 72, 160, 320), (2, 3, 4, 5), (16, 24, 20, 32), 0.05),
    # Not in the official code. From the paper: depths, widths and ratios (Table 13); 10.2M /
    # 1874M and 20.5M / 3808M (Table 14, params truncated). Measured choice (fvcore FLOPs,
    # attn_pre=True and window 7 as the paper's 1M-6M FLOPs): stem 32 = widths[0] // 2, the
    # stem rule of the authors' EMOv2 code (its EMO1_20M has these 20M widths), is the documented
    # stem closest to Table 14 (24 gives 1715M / 3594M). Head dims (EMOv2 EMO1_20M's) and drop
    # path 0.1 (ditto) change neither params nor FLOPs. Result: 10,247,240 / 1754.58M (-6.4%)
    # and 20,546,056 / 3633.41M (-4.6%). No weights exist for either.
    "10M": Variant((3, 4, 9, 3), (64, 96, 224, 384), (2, 3, 4, 5), (16, 32, 32, 32), 0.1, 32),
    "20M": Variant((3, 4, 12, 3), (64, 128, 320, 448), (2, 3, 4, 5), (16, 32, 32, 32), 0.1, 32),
}
FAMILY = _common.Family("EMO", default_size=224)
_BN = BN(1e-6, 0.9)
_IMAGENET = ("1M", "2M", "5M", "6M")


def _check_knobs(variant: Variant, stages, window_size, attn_pre, drop_path_rate):
    if isinstance(window_size, bool) or not isinstance(window_size, (int, np.integer)):
        raise TypeError(f"window_size must be an integer (<= 0: one window over the whole "
                        f"map). Received: window_size={window_size!r}.")
    if not isinstance(attn_pre, bool):
        raise TypeError(f"attn_pre must be True or False. Received: attn_pre={attn_pre!r}.")
    _common.check_rate("drop_path_rate", drop_path_rate)
    for s, stage in enumerate(stages):
        width = variant.widths[s]
        if stage.attention and width % variant.head_dims[s]:
            raise ValueError(f"stage {s + 1} width {width} is not divisible by its head "
                             f"dimension {variant.head_dims[s]}.")
        heads = width // variant.head_dims[s]
        expanded = int(width * variant.expand_ratios[s])
        if stage.attention and not attn_pre and expanded % heads:
            raise ValueError(
                f"attn_pre=False splits the stage-{s + 1} expansion ({expanded} channels) into "
                f"{heads} heads, which does not divide it. Received: attn_pre={attn_pre!r}. "
                "Use attn_pre=True (as the official checkpoints) for this variant.")


def _build(args: _common.AppArgs, variant_name: str, *, window_size, attn_pre, drop_path_rate,
           variant: Variant | None = None, stages=STAGES):
    """EMO-``variant_name``, or the network of ``variant`` and ``stages`` when given
    (keras_mobile.search passes edited tables; ``variant_name`` then only names it)."""
    variant = VARIANTS[variant_name] if variant is None else variant
    drop_path_rate = variant.drop_path_rate if drop_path_rate is None else drop_path_rate
    _check_knobs(variant, stages, window_size, attn_pre, drop_path_rate)
    shape = _common.check_args(
        FAMILY, args,
        available_weights=("imagenet",) if (variant_name in _IMAGENET and attn_pre
                                            and variant == VARIANTS[variant_name]
                                            and stages == STAGES) else (),
        imagenet_note=f"The authors released weights for EMO {', '.join(_IMAGENET)} "
                      "(attn_pre=True).")
    inputs, x = _common.model_input(args, shape, FAMILY)
    x = conv_bn(x, variant.stem_width, 3, strides=2, use_bias=True, bn=_BN, padding="symmetric",
                name="stem")
    x = irmb(x, filters=variant.stem_width, expanded=None, norm=None,
             se=SE(variant.stem_width, "silu"), skip=False, bn=_BN, name="stem")

    def block(x, step):
        stage, width, s = stages[step.stage], variant.widths[step.stage], step.stage
        first = step.repeat == 0  # downsampling: stride 2, 2x expansion, no skip, no attention
        attention = Attention(width // variant.head_dims[s], window_size, attn_pre)
        return irmb(x, filters=width,
                    expanded=int(x.shape[-1] * variant.expand_ratios[s] * (2 if first else 1)),
                    kernel_size=stage.kernel_size, strides=step.strides, norm=stage.norm,
                    act=stage.act, attention=None if first or not stage.attention else attention,
                    skip=not first, drop_rate=step.drop_rate, bn=_BN, name=step.name)

    strides = [[2] + [1] * (depth - 1) for depth in variant.depths]
    steps = _stages.plan(strides, drop_path_rate=drop_path_rate, schedule="linspace")
    x, stride = _stages.run(x, steps, block)
    x = _common.feature_marker(x, stride)
    x = normalization(x, "ln", name="top_norm")
    x = _common.head(x, args)
    return _common.finish(inputs, x, args, default_name=f"emo_{variant_name.lower()}",
                          family=FAMILY, variant=dict(checkpoint=variant_name, size=shape[0]))


_OFFICIAL_PARTS = {"attn_qk": "qk.conv", "expand_conv": "v.conv", "dw_conv": "conv_local.conv",
                   "dw_bn": "conv_local.norm", "se_reduce": "se.conv_reduce",
                   "se_expand": "se.conv_expand", "project_conv": "proj.conv"}
_OFFICIAL_FIXED = {"stem_conv": "stage0.0.convs.0.0", "stem_bn": "stage0.0.convs.0.1",
                   "top_norm": "norm.norm", "predictions": "head"}


def official_module(layer) -> str | None:
    """The official PyTorch module path holding ``layer``'s weights (``stage3.1.qk.conv``)."""
    if layer.name in _OFFICIAL_FIXED:
        return _OFFICIAL_FIXED[layer.name]
    scope, _, part = layer.name.partition("_")
    if part == "norm":  # the official LayerNorm2d wraps nn.LayerNorm one level deeper
        module = ("norm.norm" if isinstance(layer, keras.layers.LayerNormalization)
                  else "norm")
    elif part in _OFFICIAL_PARTS:
        module = _OFFICIAL_PARTS[part]
    else:
        return None
    if scope == "stem":
        return f"stage0.1.{module}"
    return f"stage{scope[len('block'):-1]}.{ord(scope[-1]) - 97}.{module}"


_DOC = """EMO-{v} (Zhang et al., ICCV 2023) with keras.applications' signature.

    Args:
        input_shape: static ``(height, width, 3)``; default ``(224, 224, 3)``.
            Any size works: feature maps that are not a multiple of the window
            size are zero-padded for attention, as in the official code.
        window_size: attention window (7 as trained; the official detection and
            segmentation configs use 10 and 16 for EMO-5M; ``<= 0``: global).
        attn_pre: True (official checkpoints): attend over the normalized input
            and expand afterwards; False: the paper's order (expand first).
        drop_path_rate: stochastic depth at the last block (default: {dp}).
        include_top, weights, input_tensor, pooling, classes,
        classifier_activation, name: as in keras.applications.
        include_preprocessing: True: raw [0, 255] RGB in, ImageNet mean/std
            normalization inside the model.

    Example:
        >>> model = keras_mobile.EMO{v}(weights=None, classes=10)
"""


def _emo(variant_name: str, paper: str, tiny=None):
    default_weights = "imagenet" if variant_name in _IMAGENET else None

    def builder(input_shape=None, window_size=7, attn_pre=True, drop_path_rate=None,
                include_top=True, weights=default_weights, input_tensor=None, pooling=None,
                classes=1000, classifier_activation="softmax", include_preprocessing=True,
                name=None):
        return _build(_common.AppArgs(include_top, weights, input_tensor, input_shape, pooling,
                                      classes, classifier_activation, include_preprocessing,
                                      name),
                      variant_name, window_size=window_size, attn_pre=attn_pre,
                      drop_path_rate=drop_path_rate)

    doc = _DOC.format(v=variant_name, dp=VARIANTS[variant_name].drop_path_rate)
    return register(FAMILY, paper=paper, name=f"EMO{variant_name}", doc=doc, tiny=tiny)(builder)


EMO1M = _emo("1M", "1.3M / 261M / 71.5%",  # 64 px: the attention stages see several tokens
             tiny=dict(input_shape=(64, 64, 3)))
EMO2M = _emo("2M", "2.3M / 439M / 75.1%")
EMO5M = _emo("5M", "5.1M / 903M / 78.4%")
EMO6M = _emo("6M", "6.1M / 961M / 79.0%")
EMO10M = _emo("10M", "10.2M / 1874M / 81.0%")
EMO20M = _emo("20M", "20.5M / 3808M / 82.0%")
