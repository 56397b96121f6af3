"""SSDLite (MobileNetV2, Sandler et al., CVPR 2018, arXiv:1801.04381 §6.2) as the EMO
paper trains it on COCO (Zhang et al., ICCV 2023, arXiv:2301.01146, Table 8).

Reference: ``zhangzjn/EMO`` ``down-stream-tasks/mmdetection``:
``configs/ssd_emo/ssdlite_emo_{1M,2M,5M}_pretrain_coco.py`` with mmdet 2.x's
``SSDNeck(use_depthwise=True)`` and ``SSDHead(use_depthwise=True)``; see
``specs/dense.md`` §1. The graph, backbone to raw outputs:

* two backbone maps at strides 16 and 32 (:func:`ssd_feature_layers`);
* four extra levels (``SSDNeck``), each ``ConvModule`` 1x1 to out/2 + BN + ReLU6
  (``extra{i}_reduce``), then mmcv's ``DepthwiseSeparableConvModule``: depthwise 3x3
  stride 2 padding 1 + BN + ReLU6 (``extra{i}_dw``) and 1x1 to out + BN + ReLU6
  (``extra{i}_expand``), out = 512, 256, 256, 128: maps 20, 10, 5, 3, 2, 1 at 320;
* per level, two branches (``SSDHead``): depthwise 3x3 + BN + ReLU6
  (``head{i}_cls_dw`` / ``head{i}_box_dw``), then a 1x1 conv with bias to A * (C + 1)
  class logits (``head{i}_cls_conv``) or A * 4 box encodings (``head{i}_box_conv``),
  A = 6 anchors per location;
* the levels reshaped and concatenated in anchor order (:mod:`.anchors`): outputs
  ``box_encodings`` ``[B, N, 4]`` and ``class_logits`` ``[B, N, C + 1]``, N = 3,234.

BN is eps 1e-3, PyTorch momentum 0.03 (Keras 0.97). Conv kernels start as the
configs' ``init_cfg``: normal std 0.03 in the neck (mmcv's ``TruncNormal`` cuts at
+-2 absolute, i.e. nowhere), std 0.001 in the head; biases 0.

Deviations from mmdet, none in the arithmetic:

* the class column of the background is 0 in every anchor's C + 1 logits (softmax),
  as TFLite's ``TFLite_Detection_PostProcess`` skips (``label_offset``) and the TF
  Object Detection API writes it; mmdet 2.x's ``SSDHead`` puts it last (label
  ``num_classes``). A converter of mmdet weights moves that output channel;
* box encodings are (ty, tx, th, tw) (TFLite's order, :mod:`.box_coder`); mmdet's
  ``DeltaXYWH`` writes (tx, ty, tw, th): a converter swaps those channels too.

Anchors, the box coder, the losses and NMS stay out of the model (``specs/dense.md``
§4: tfmot and TFLite need a plain functional graph).
"""

from __future__ import annotations

from keras import layers

from keras_mobile import backbones as _common
from keras_mobile.blocks import BN, conv_bn
from keras_mobile.detection import anchors
from keras_mobile.detection.postprocess import SSDLITE_TEST, Detector

EXTRA_FILTERS = (512, 256, 256, 128)  # SSDNeck out_channels after the two backbone maps
_BN = BN(epsilon=1e-3, momentum=0.97)  # norm_cfg: BN eps 1e-3, momentum 0.03 (PyTorch)
_NECK_INIT = 0.03  # SSDNeck init_cfg TruncNormal std
_HEAD_INIT = 0.001  # SSDHead init_cfg Normal std
DEFAULT_SHAPE = (320, 320, 3)
# Every keras_mobile backbone halves a side n to ceil(n / 2) per stride-2 layer (TF "same"
# and PyTorch's padding k // 2 agree), so its stride-16 map is ceil(n / 16): 20 for n in
# 305..320, and the stride-32 map and the extra levels are then 10, 5, 3, 2, 1.
SIZE_RULE = ("(height, width, 3) with height and width in 305..320, whose maps are the "
             "20, 10, 5, 3, 2, 1 of the SSDLite anchors (strides 16 ... 320 of a 320x320 "
             "input; 320 is the trained size)")


def _valid_side(side: int) -> bool:
    return -(-side // 16) == anchors.SSD_FEATURE_SIZES[0]


def _consumer_scope(backbone, layer_name: str) -> str | None:
    """The block scope (``block6a``) of the layer that reads ``layer_name``'s output."""
    layer = backbone.get_layer(layer_name)
    for node in layer._outbound_nodes:
        return node.operation.name.split("_")[0]
    return None


def ssd_feature_layers(backbone) -> tuple[str, str]:
    """The backbone layers (stride 16, stride 32) SSDLite predicts on.

    * a backbone with a "top" 1x1 conv before P5 (MobileNetV2, MobileNetV3, EfficientNet):
      the expansion (``expand_act``) of the first stride-32 block and the top conv's
      output (``P5``), as the MobileNetV2 paper (§6.2: "the expansion of layer 15" and
      "the last layer", 576 and 1280 channels) and the TF Object Detection API
      (``layer_15/expansion_output``, ``layer_19``; MobileNetV3 ``layer_13`` /
      ``layer_17``);
    * sandglass backbones (MobileNeXt): the same expansion and the last expansion before
      the final linear depthwise, as the official ``ssdlite-pytorch-mobilenext``
      (``features[13].conv[:5]``, ``features[20].conv[:8]``: 576 and 1280 channels);
    * any other (EMO, MobileNet V1, a custom model): ``P4`` and ``P5``, the last maps at
      strides 16 and 32, as EMO's ``out_indices=(3, 4)`` (stage outputs, without the
      classifier's final norm).
    """
    names = [layer.name for layer in backbone.layers]
    scope = _consumer_scope(backbone, "P4")
    expansion = f"{scope}_expand_act" if scope else None
    if expansion not in names:
        return ("P4", "P5")
    if "top_conv" in names:
        return (expansion, "P5")
    if any(name.endswith("_dw2_conv") for name in names):
        last = max((i for i, n in enumerate(names) if n.endswith("_expand_act")
                    and i < names.index("P5")), default=None)
        return (expansion, names[last])
    return ("P4", "P5")


def _concatenate(levels, *, name: str):
    """The levels in anchor order. XNNPACK takes a CONCATENATION of at most 5 inputs
    (6 split the graph into partitions): the backbone's two levels are joined first."""
    first = layers.Concatenate(axis=1, name=f"{name}_backbone_levels")(levels[:2])
    return layers.Concatenate(axis=1, name=name)([first, *levels[2:]])


def _head(x, filters: int, *, name: str):
    x = conv_bn(x, None, 3, depthwise=True, bn=_BN, act="relu6", name=f"{name}_dw")
    return layers.Conv2D(filters, 1, name=f"{name}_conv")(x)


def SSDLite(backbone="EMO1M", num_classes: int = 80, input_shape=None,
            backbone_weights="imagenet", name: str | None = None):
    """SSDLite on a keras_mobile backbone, as the EMO paper's COCO detector.

    Args:
        backbone: a registered model name (built with ``include_top=False`` and the
            official detection config's settings, e.g. EMO-5M's window 10) or a built
            ``keras.Model`` with ``P4`` and ``P5`` markers.
        num_classes: foreground classes (80 for COCO); the logits have one more, the
            background, in column 0.
        input_shape: ``(height, width, 3)``, height and width in 305..320 (the maps must
            be 20, 10, 5, 3, 2, 1); default ``(320, 320, 3)`` or the backbone model's.
        backbone_weights: ``weights`` of the registered backbone (None, "imagenet" or a
            path); None with a backbone model.
        name: the model's name (default ``ssdlite_<backbone name>``).

    Returns:
        A functional ``keras.Model`` from raw [0, 255] RGB images to
        ``{"box_encodings": [B, N, 4], "class_logits": [B, N, num_classes + 1]}``, N =
        3,234; :func:`keras_mobile.detection.anchors_for` gives its anchors.

    Example:
        >>> det = keras_mobile.detection.SSDLite("EMO1M", backbone_weights=None)
        >>> keras_mobile.profile(det).trainable_params  # the paper's "2.3M"
        2311980
    """
    _common.check_num_classes(num_classes)
    _common.check_name(name)
    backbone = _common.resolve_backbone(
        backbone, backbone_weights, input_shape, default_shape=DEFAULT_SHAPE, rule=SIZE_RULE,
        valid_side=_valid_side, levels=(4, 5),
        backbone_kwargs=_common.DETECTION_BACKBONE_KWARGS)
    stride16, stride32 = ssd_feature_layers(backbone)
    maps = [backbone.get_layer(stride16).output, backbone.get_layer(stride32).output]
    if (tuple(maps[0].shape[1:3]), tuple(maps[1].shape[1:3])) != ((20, 20), (10, 10)):
        raise ValueError(f"backbone must give 20x20 and 10x10 maps at strides 16 and 32 at "
                         f"its input size. Received: backbone={backbone.name!r} with maps "
                         f"{tuple(maps[0].shape[1:3])} and {tuple(maps[1].shape[1:3])}.")
    x = maps[1]
    for i, filters in enumerate(EXTRA_FILTERS, start=1):
        x = conv_bn(x, filters // 2, 1, bn=_BN, act="relu6", name=f"extra{i}_reduce")
        x = conv_bn(x, None, 3, strides=2, depthwise=True, bn=_BN, act="relu6",
                    padding="symmetric", name=f"extra{i}_dw")
        x = conv_bn(x, filters, 1, bn=_BN, act="relu6", name=f"extra{i}_expand")
        maps.append(x)
    per_location = anchors.num_anchors_per_location("ssd")
    boxes, logits = [], []
    for i, x in enumerate(maps, start=1):
        c = _head(x, per_location * (num_classes + 1), name=f"head{i}_cls")
        logits.append(layers.Reshape((-1, num_classes + 1), name=f"head{i}_cls_reshape")(c))
        b = _head(x, per_location * 4, name=f"head{i}_box")
        boxes.append(layers.Reshape((-1, 4), name=f"head{i}_box_reshape")(b))
    outputs = {"box_encodings": _concatenate(boxes, name="box_encodings"),
               "class_logits": _concatenate(logits, name="class_logits")}
    model = Detector(_common.model_input(backbone), outputs,
                     name=name or f"ssdlite_{backbone.name}", **SSDLITE_TEST)
    _common.initialize(model, backbone, ("extra",), _NECK_INIT)
    _common.initialize(model, backbone, ("head",), _HEAD_INIT)
    return model
