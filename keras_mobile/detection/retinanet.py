"""RetinaNet (Lin et al., ICCV 2017, arXiv:1708.02002) as the EMO paper trains it on COCO
(Zhang et al., ICCV 2023, arXiv:2301.01146, Table 8).

Reference: ``zhangzjn/EMO`` ``down-stream-tasks/mmdetection``:
``configs/_base_/models/retinanet_emo_fpn.py`` and ``retinanet_emo_{1M,2M,5M}_fpn_1x_coco.py``
with mmdet 2.x's ``FPN`` and ``RetinaHead``; see ``specs/dense.md`` §1. The graph:

* FPN, 256 channels, no norm, no activation (``FPN(start_level=1,
  add_extra_convs='on_input', num_outs=5)``): 1x1 laterals with bias on the backbone's
  ``P3``, ``P4``, ``P5`` (``fpn{l}_lateral``), the top-down sum with nearest 2x
  upsampling (``fpn{l}_upsample``, built by :func:`upsample_nearest` from
  concatenations and reshapes that XNNPACK delegates; ``fpn{l}_add``), 3x3 output convs
  (``fpn{l}_output``); P6 a 3x3 stride-2 padding-1 conv on the backbone's stride-32
  map (``fpn6``), P7 the same on P6 (``fpn7``). The official config leaves
  ``relu_before_extra_convs=False``, so P7 reads P6 without the ReLU of the paper
  (no parameter changes);
* one head shared by the five levels (``RetinaHead``): per branch 4 stacked 3x3 convs
  of 256 with bias + ReLU (``head_cls{k}_conv``, ``head_box{k}_conv``), then a 3x3
  conv to A * C sigmoid logits (``head_cls_conv``) or A * 4 encodings
  (``head_box_conv``), A = 9; kernels normal std 0.01, biases 0 but the class bias
  ``-log((1 - 0.01) / 0.01)``;
* the levels reshaped (``head{l}_cls_reshape``) and concatenated in anchor order:
  ``box_encodings`` ``[B, N, 4]`` (ty, tx, th, tw; stds 1 in this config) and
  ``class_logits`` ``[B, N, C]`` (no background class: focal loss).

Input sides must be multiples of 32: mmdet pads every image to a multiple of 32
(``Pad(size_divisor=32)``), so the top-down sums are exact 2x; the official training
size is 1333x800 (padded 1344x800). Anchors, decoding and NMS stay out of the model.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from keras_mobile import backbones as _common
from keras_mobile.blocks import conv_bn
from keras_mobile.detection import anchors
from keras_mobile.detection.postprocess import RETINANET_TEST, Detector

FPN_FILTERS = 256
HEAD_CONVS = 4  # RetinaHead stacked_convs
PRIOR_PROBABILITY = 0.01  # bias_prob of retina_cls
DEFAULT_SHAPE = (320, 320, 3)
SIZE_RULE = ("(height, width, 3) with height and width multiples of 32 (mmdet pads every "
             "image to a multiple of 32; the official size is 1333x800, padded 1344x800)")


def _valid_side(side: int) -> bool:
    return side >= 32 and side % 32 == 0


def upsample_nearest(x, size, *, name: str):
    """mmdet ``FPN``'s ``F.interpolate(x, size=size, mode='nearest')`` (PyTorch's nearest:
    output row ``i`` reads input row ``floor(i * in / out)``) for ``size`` twice the
    input's sides, or one less on a side (an odd map the level below halved with
    ``ceil``): both read input row ``i // 2``.

    Built from rank-4 ``Concatenate`` and ``Reshape`` layers: each pixel repeated
    along the channels, the channels folded into columns, then each row repeated
    along the columns and folded into rows (then a crop for an odd side). TFLite
    runs them as CONCATENATION and RESHAPE, which XNNPACK delegates at float32 and
    int8 alike, where ``UpSampling2D`` lowers to a rank-5 reshape and TILE and a
    ``Resizing`` layer to RESIZE_NEAREST_NEIGHBOR, neither of which XNNPACK runs
    (each splits the delegated graph). Exact: only copies.

    Args:
        x: a ``[B, h, w, C]`` tensor with static ``h``, ``w``, ``C``.
        size: the output's ``(height, width)``, each ``2 * side`` or ``2 * side - 1``.
        name: the last layer's name; the others get it plus ``_cols``,
            ``_cols_reshape``, ``_rows`` (and the crop ``name`` when cropping,
            the reshape then ``_rows_reshape``).
    """
    height, width, channels = (int(d) for d in x.shape[1:])
    size = tuple(int(d) for d in size)
    if size[0] not in (2 * height, 2 * height - 1) or size[1] not in (2 * width, 2 * width - 1):
        raise ValueError(f"size must be twice the input's sides, or one less. Received: "
                         f"size={size} for an input of {(height, width)}.")
    crop = (2 * height - size[0], 2 * width - size[1])
    x = layers.Concatenate(axis=-1, name=f"{name}_cols")([x, x])  # [B, h, w, 2C]
    x = layers.Reshape((height, 2 * width, channels), name=f"{name}_cols_reshape")(x)
    x = layers.Concatenate(axis=2, name=f"{name}_rows")([x, x])  # [B, h, 4w, C]
    x = layers.Reshape((2 * height, 2 * width, channels),
                       name=f"{name}_rows_reshape" if any(crop) else name)(x)
    if any(crop):
        x = layers.Cropping2D(((0, crop[0]), (0, crop[1])), name=name)(x)
    return x


def _fpn(c3, c4, c5):
    """P3 ... P7 (mmdet ``FPN``, ``add_extra_convs='on_input'``)."""
    def conv(x, kernel_size, strides=1, *, name):
        return conv_bn(x, FPN_FILTERS, kernel_size, strides=strides, use_bias=True, bn=None,
                       padding="symmetric", name=name)

    lateral = {level: conv(c, 1, name=f"fpn{level}_lateral")
               for level, c in ((3, c3), (4, c4), (5, c5))}
    top_down = {5: lateral[5]}
    for level in (4, 3):
        up = upsample_nearest(top_down[level + 1], tuple(lateral[level].shape[1:3]),
                              name=f"fpn{level}_upsample")
        top_down[level] = layers.Add(name=f"fpn{level}_add")([lateral[level], up])
    outputs = [conv(top_down[level], 3, name=f"fpn{level}_output") for level in (3, 4, 5)]
    outputs.append(conv(c5, 3, 2, name="fpn6"))
    outputs.append(conv(outputs[-1], 3, 2, name="fpn7"))
    return outputs


def _branch(filters: int, *, name: str, bias_initializer="zeros"):
    """A shared head branch: ``x -> x`` over the levels, built once."""
    def normal():  # one instance per layer: an unseeded Keras 3 initializer repeats its values
        return keras.initializers.RandomNormal(stddev=0.01)

    tower = [(layers.Conv2D(FPN_FILTERS, 3, padding="same", kernel_initializer=normal(),
                            name=f"head_{name}{k}_conv"),
              layers.ReLU(name=f"head_{name}{k}_act")) for k in range(1, HEAD_CONVS + 1)]
    last = layers.Conv2D(filters, 3, padding="same", kernel_initializer=normal(),
                         bias_initializer=bias_initializer, name=f"head_{name}_conv")

    def apply(x):
        for conv, act in tower:
            x = act(conv(x))
        return last(x)

    return apply


def RetinaNet(backbone="EMO1M", num_classes: int = 80, input_shape=None,
              backbone_weights="imagenet", name: str | None = None):
    """RetinaNet with an FPN on a keras_mobile backbone, as the EMO paper's COCO detector.

    Args:
        backbone: a registered model name (built with ``include_top=False`` and the
            official detection config's settings, e.g. EMO-5M's window 10) or a built
            ``keras.Model`` with ``P3``, ``P4`` and ``P5`` markers.
        num_classes: classes (80 for COCO), sigmoid logits, no background column.
        input_shape: ``(height, width, 3)`` with sides multiples of 32; default
            ``(320, 320, 3)`` (a mobile size; the official training size is 1333x800)
            or the backbone model's.
        backbone_weights: ``weights`` of the registered backbone (None, "imagenet" or a
            path); None with a backbone model.
        name: the model's name (default ``retinanet_<backbone name>``).

    Returns:
        A functional ``keras.Model`` from raw [0, 255] RGB images to
        ``{"box_encodings": [B, N, 4], "class_logits": [B, N, num_classes]}``;
        :func:`keras_mobile.detection.anchors_for` gives its anchors.

    Example:
        >>> det = keras_mobile.detection.RetinaNet("EMO1M", backbone_weights=None)
        >>> det.output["class_logits"].shape
        (None, 19206, 80)
    """
    _common.check_num_classes(num_classes)
    _common.check_name(name)
    backbone = _common.resolve_backbone(
        backbone, backbone_weights, input_shape, default_shape=DEFAULT_SHAPE, rule=SIZE_RULE,
        valid_side=_valid_side, levels=(3, 4, 5),
        backbone_kwargs=_common.DETECTION_BACKBONE_KWARGS)
    c3, c4, c5 = (backbone.get_layer(f"P{level}").output for level in (3, 4, 5))
    sizes = [tuple(c.shape[1:3]) for c in (c3, c4, c5)]
    if sizes[0] != tuple(2 * d for d in sizes[1]) or sizes[1] != tuple(2 * d for d in sizes[2]):
        raise ValueError(f"backbone must halve its maps exactly from P3 to P5. Received: "
                         f"backbone={backbone.name!r} with P3, P4, P5 maps {sizes}.")
    per_location = anchors.num_anchors_per_location("retinanet")
    prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    cls_branch = _branch(per_location * num_classes, name="cls",
                         bias_initializer=keras.initializers.Constant(prior))
    box_branch = _branch(per_location * 4, name="box")
    boxes, logits = [], []
    for level, x in enumerate(_fpn(c3, c4, c5), start=3):
        logits.append(layers.Reshape((-1, num_classes),
                                     name=f"head{level}_cls_reshape")(cls_branch(x)))
        boxes.append(layers.Reshape((-1, 4), name=f"head{level}_box_reshape")(box_branch(x)))
    outputs = {"box_encodings": layers.Concatenate(axis=1, name="box_encodings")(boxes),
               "class_logits": layers.Concatenate(axis=1, name="class_logits")(logits)}
    return Detector(_common.model_input(backbone), outputs,
                    name=name or f"retinanet_{backbone.name}", **RETINANET_TEST)
