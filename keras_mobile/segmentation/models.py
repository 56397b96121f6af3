"""DeepLabv3 and PSPNet as the EMO paper trains them on ADE20K (Zhang et al., ICCV 2023,
arXiv:2301.01146, Table 9), and LR-ASPP (Howard et al., "Searching for MobileNetV3",
ICCV 2019, §6.4) as torchvision builds it.

DeepLabv3 / PSPNet: ``zhangzjn/EMO`` ``down-stream-tasks/mmsegmentation``
``configs/{deeplabv3,pspnet}_emo/*_512x512_80k_ade20k.py`` with mmseg 0.x's
``ASPPHead`` / ``PSPHead`` and an auxiliary ``FCNHead`` (``specs/dense.md`` §1):

* the decode head reads stage 4 (``P5``), the auxiliary head stage 3 (``P4``); EMO has
  no dilated stage, so its output stride is 32 (a 16x16 map at 512); ``output_stride``
  16 or 8 dilates the last stages of the conv backbones
  (:func:`keras_mobile.features.with_output_stride`);
* ASPP (``decode_*``): image pooling (global average, 1x1 conv) + one branch per dilation
  (1: a 1x1 conv, d > 1: a 3x3 conv of dilation d), concatenated, a 3x3 ``bottleneck``;
  PSP: the map and, per pool scale, an adaptive average pooling (PyTorch's bins) + 1x1
  conv upsampled back, concatenated, a 3x3 ``bottleneck``; each conv 256 channels + BN +
  ReLU, then dropout 0.1 and a 1x1 ``classifier`` with bias;
* the auxiliary FCN head (``aux_*``): 3x3 conv 256 + BN + ReLU, dropout 0.1, 1x1
  classifier; its loss weight is 0.4 (:data:`AUX_LOSS_WEIGHT`). It is part of the model
  (and of the parameter count, as mmseg counts it) but not of the exported graph
  (:meth:`Segmenter.inference_model`), as mmseg's test forward skips it;
* logits upsampled bilinearly (``align_corners=False``, TF's half-pixel centers) to the
  input size inside the graph.

LR-ASPP (torchvision ``LRASPPHead``, ``lraspp_mobilenet_v3_large``): on the stride-8
map (``P3``) and the last map at output stride 16 (``P5``): 1x1 conv 128 + BN + ReLU
times a gate (global average, 1x1 conv 128, sigmoid), upsampled to stride 8, a 1x1
classifier on it plus a 1x1 classifier on the stride-8 map.

BN is eps 1e-5, momentum 0.1 (PyTorch; Keras 0.9). Kernels start as mmcv's
``ConvModule`` (Kaiming normal, fan out) and the classifiers as ``conv_seg`` (normal
std 0.01), biases 0.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers

from keras_mobile import backbones as _common
from keras_mobile import features
from keras_mobile.blocks import BN, conv_bn
from keras_mobile.models._common import _fail
from keras_mobile.segmentation.segmenting import Segmenting

_BN = BN(epsilon=1e-5, momentum=0.9)  # mmseg's SyncBN, torchvision's BatchNorm2d
CHANNELS = 256  # decode and auxiliary heads (the configs' channels=256)
LRASPP_CHANNELS = 128  # torchvision's inter_channels
DROPOUT = 0.1  # before each classifier (mmseg's dropout_ratio)
AUX_LOSS_WEIGHT = 0.4
DEFAULT_SHAPE = (512, 512, 3)
SIZE_RULE = "(height, width, 3) with height and width multiples of 32"
IGNORE_LABEL = 255


def _valid_side(side: int) -> bool:
    return side % 32 == 0


@keras.saving.register_keras_serializable(package="keras_mobile")
class Segmenter(Segmenting, keras.Model):
    """A functional segmenter: image -> ``{"logits": [B, H, W, C]}`` at the input size
    (and ``"aux_logits"`` when it has an auxiliary head), what :func:`DeepLabV3`,
    :func:`PSPNet` and :func:`LRASPP` return. A plain functional model (the same graph,
    layers and weights; profiling, conversion, ``.keras`` saving work as usual) with
    :class:`~keras_mobile.segmentation.segmenting.Segmenting`'s ``num_classes``,
    ``image_size``, ``inference_model()`` and ``predict_masks()``."""


def predict_masks(model, images, *, batch_size: int | None = None, verbose=0) -> np.ndarray:
    """:meth:`Segmenter.predict_masks` for any model whose output (or its ``"logits"``)
    is ``[B, H, W, C]`` logits."""
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[None]
    outputs = model.predict(images, batch_size=batch_size, verbose=verbose)
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs
    dtype = np.uint8 if logits.shape[-1] <= 256 else np.int32
    return np.argmax(logits, axis=-1).astype(dtype)


# --- building blocks -------------------------------------------------------------------

def resize(x, size: tuple[int, int], *, name: str):
    """Bilinear resize to ``size`` (PyTorch's ``align_corners=False``): ``UpSampling2D`` for
    a whole factor, ``Resizing`` otherwise; both are TFLite's RESIZE_BILINEAR with half
    pixel centers (rank 4, static shape)."""
    height, width = x.shape[1:3]
    if (height, width) == tuple(size):
        return x
    if size[0] % height == 0 and size[1] % width == 0:
        return layers.UpSampling2D((size[0] // height, size[1] // width),
                                   interpolation="bilinear", name=name)(x)
    return layers.Resizing(size[0], size[1], interpolation="bilinear", name=name)(x)


def _bins(length: int, count: int) -> list[tuple[int, int]]:
    """PyTorch's ``AdaptiveAvgPool`` bins: ``[floor(i n / s), ceil((i + 1) n / s))``."""
    return [(i * length // count, -(-(i + 1) * length // count)) for i in range(count)]


def _pooling_weights(length: int, count: int) -> np.ndarray:
    """``[length, count]``: column i averages bin i."""
    weights = np.zeros((length, count), np.float32)
    for i, (start, end) in enumerate(_bins(length, count)):
        weights[start:end, i] = 1.0 / (end - start)
    return weights


def adaptive_average_pool(x, size: int, *, name: str):
    """PyTorch's ``AdaptiveAvgPool2d(size)`` on a static map.

    ``size`` 1: a global average (MEAN). Otherwise one frozen 1x1 convolution holding the
    bins' weights over the flattened map: ``[C, H * W] -> [C, size * size]`` between
    transposes, the bins even or not (a 16x16 map in 3 or 6 bins). Operators XNNPACK takes
    in float and int8 (its int8 has no AVERAGE_POOL_2D; a depthwise formulation needs more
    than 4,832 channels, where TFLite's reference kernel, which int8 calibration runs,
    never returns)."""
    height, width, channels = x.shape[1:]
    if size == 1:
        return layers.GlobalAveragePooling2D(keepdims=True, name=name)(x)
    kernel = np.einsum("hi,wj->hwij", _pooling_weights(height, size),
                       _pooling_weights(width, size)).reshape(height * width, size * size)
    y = layers.Permute((3, 1, 2), name=f"{name}_channels_first")(x)  # [C, H, W]
    y = layers.Reshape((1, channels, height * width), name=f"{name}_flatten")(y)
    bins = layers.Conv2D(size * size, 1, use_bias=False, trainable=False, name=f"{name}_bins")
    y = bins(y)
    bins.set_weights([kernel[None, None]])
    y = layers.Reshape((channels, size, size), name=f"{name}_unflatten")(y)
    return layers.Permute((2, 3, 1), name=name)(y)


def _classifier(x, num_classes: int, *, name: str):
    x = layers.Dropout(DROPOUT, name=f"{name}_dropout")(x)
    return layers.Conv2D(num_classes, 1, name=f"{name}_classifier")(x)


def _aspp(x, num_classes: int, dilations, bottleneck_kernel_size: int):
    size = tuple(x.shape[1:3])
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="decode_image_pool")(x)
    pooled = conv_bn(pooled, CHANNELS, 1, bn=_BN, act="relu", name="decode_image_pool_proj")
    branches = [resize(pooled, size, name="decode_image_pool_resize")]
    for i, rate in enumerate(dilations):
        branches.append(conv_bn(x, CHANNELS, 1 if rate == 1 else 3, dilation_rate=rate,
                                bn=_BN, act="relu", name=f"decode_aspp{i}"))
    x = layers.Concatenate(name="decode_concat")(branches)
    x = conv_bn(x, CHANNELS, bottleneck_kernel_size, bn=_BN, act="relu",
                name="decode_bottleneck")
    return _classifier(x, num_classes, name="decode")


def _psp(x, num_classes: int, pool_scales):
    size = tuple(x.shape[1:3])
    branches = [x]
    for scale in pool_scales:
        y = adaptive_average_pool(x, scale, name=f"decode_pool{scale}")
        y = conv_bn(y, CHANNELS, 1, bn=_BN, act="relu", name=f"decode_pool{scale}_proj")
        branches.append(resize(y, size, name=f"decode_pool{scale}_resize"))
    x = layers.Concatenate(name="decode_concat")(branches)
    x = conv_bn(x, CHANNELS, 3, bn=_BN, act="relu", name="decode_bottleneck")
    return _classifier(x, num_classes, name="decode")


def _fcn(x, num_classes: int):
    x = conv_bn(x, CHANNELS, 3, bn=_BN, act="relu", name="aux_conv")
    return _classifier(x, num_classes, name="aux")


def _lraspp(low, high, num_classes: int):
    x = conv_bn(high, LRASPP_CHANNELS, 1, bn=_BN, act="relu", name="decode_cbr")
    gate = layers.GlobalAveragePooling2D(keepdims=True, name="decode_scale_pool")(high)
    gate = conv_bn(gate, LRASPP_CHANNELS, 1, bn=None, act="sigmoid", name="decode_scale")
    x = layers.Multiply(name="decode_gated")([x, gate])
    x = resize(x, tuple(low.shape[1:3]), name="decode_resize")
    high_logits = layers.Conv2D(num_classes, 1, name="decode_high_classifier")(x)
    low_logits = layers.Conv2D(num_classes, 1, name="decode_low_classifier")(low)
    return layers.Add(name="decode_logits")([low_logits, high_logits])


def _initialize(model, backbone):
    """mmcv's ``ConvModule`` init (Kaiming normal, fan out) for the heads' convolutions,
    normal std 0.01 for their classifiers; biases stay 0."""
    skip = {id(layer) for layer in backbone.layers}
    seed = keras.random.SeedGenerator()  # follows keras.utils.set_random_seed
    for layer in model.layers:
        if id(layer) in skip or not layer.trainable or not isinstance(layer, layers.Conv2D):
            continue  # the backbone's, and the pooling bins' constants
        shape = layer.kernel.shape
        if layer.name.endswith("classifier"):
            stddev = 0.01
        else:
            stddev = math.sqrt(2.0 / (shape[0] * shape[1] * shape[-1]))
        layer.kernel.assign(keras.random.normal(shape, stddev=stddev, seed=seed))


# --- the models ------------------------------------------------------------------------

def _check_ints(arg: str, values, minimum: int, allow_empty: bool):
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)) or (
            not values and not allow_empty) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        _fail(arg, f"a {'' if allow_empty else 'non-empty '}tuple of integers >= {minimum}",
              values)
    return tuple(values)


def _segmenter(head: str, backbone, num_classes, input_shape, backbone_weights,
               output_stride, auxiliary_head, name, levels, build_head):
    _common.check_num_classes(num_classes)
    _common.check_name(name)
    if not isinstance(auxiliary_head, bool):
        _fail("auxiliary_head", "True or False", auxiliary_head, error=TypeError)
    if isinstance(output_stride, bool) or output_stride not in features.OUTPUT_STRIDES:
        _fail("output_stride", f"one of {list(features.OUTPUT_STRIDES)}", output_stride)
    backbone = _common.resolve_backbone(
        backbone, backbone_weights, input_shape, default_shape=DEFAULT_SHAPE, rule=SIZE_RULE,
        valid_side=_valid_side, levels=levels,
        backbone_kwargs=_common.SEGMENTATION_BACKBONE_KWARGS)
    backbone = features.with_output_stride(backbone, output_stride)
    maps = {level: backbone.get_layer(f"P{level}").output for level in levels}
    size = tuple(backbone.inputs[0].shape[1:3])
    outputs = {"logits": resize(build_head(maps), size, name="logits")}
    if auxiliary_head:
        outputs["aux_logits"] = resize(_fcn(maps[4], num_classes), size, name="aux_logits")
    model = Segmenter(_common.model_input(backbone), outputs,
                      name=name or f"{head}_{backbone.name}")
    _initialize(model, backbone)
    return model


def DeepLabV3(backbone="EMO1M", num_classes: int = 150, input_shape=None,
              backbone_weights="imagenet", *, output_stride: int = 32,
              dilations=(1, 12, 24, 36), bottleneck_kernel_size: int = 3,
              auxiliary_head: bool = True, name: str | None = None):
    """DeepLabv3 (Chen et al., 2017) with mmseg's ASPP head, as the EMO paper's ADE20K
    model.

    Args:
        backbone: a registered model name (built with ``include_top=False`` and the
            official segmentation config's settings, e.g. EMO-5M's window 16) or a built
            ``keras.Model`` with ``P4`` and ``P5`` markers.
        num_classes: classes predicted per pixel (150 for ADE20K).
        input_shape: ``(height, width, 3)``, sides multiples of 32; default
            ``(512, 512, 3)`` or the backbone model's.
        backbone_weights: ``weights`` of the registered backbone (None, "imagenet" or a
            path); None with a backbone model.
        output_stride: 32 (the EMO configs), 16 or 8 (the backbone's last stages dilated).
        dilations: the ASPP branches (1: a 1x1 conv); ``(1,)`` with
            ``bottleneck_kernel_size=1`` and ``output_stride=16`` is Model Garden's mobile
            DeepLabv3 (ASPP without atrous branches).
        bottleneck_kernel_size: 3 (mmseg) or 1 (Model Garden's projection).
        auxiliary_head: the FCN head on ``P4`` for training (loss weight 0.4).
        name: the model's name (default ``deeplabv3_<backbone name>``).

    Returns:
        A :class:`Segmenter`: raw [0, 255] RGB images -> ``{"logits": [B, H, W,
        num_classes]}`` (+ ``"aux_logits"``).

    Example:
        >>> seg = keras_mobile.segmentation.DeepLabV3("EMO1M", backbone_weights=None)
        >>> keras_mobile.profile(seg).trainable_params  # Table 9's "5.6M"
    """
    dilations = _check_ints("dilations", dilations, 1, allow_empty=False)
    if bottleneck_kernel_size not in (1, 3):
        _fail("bottleneck_kernel_size", "1 or 3", bottleneck_kernel_size)
    return _segmenter("deeplabv3", backbone, num_classes, input_shape, backbone_weights,
                      output_stride, auxiliary_head, name, (4, 5),
                      lambda maps: _aspp(maps[5], num_classes, dilations,
                                         bottleneck_kernel_size))


def PSPNet(backbone="EMO1M", num_classes: int = 150, input_shape=None,
           backbone_weights="imagenet", *, output_stride: int = 32, pool_scales=(1, 2, 3, 6),
           auxiliary_head: bool = True, name: str | None = None):
    """PSPNet (Zhao et al., CVPR 2017) with mmseg's PSP head, as the EMO paper's ADE20K
    model. Arguments as :func:`DeepLabV3`; ``pool_scales``: the pyramid's bins per side."""
    pool_scales = _check_ints("pool_scales", pool_scales, 1, allow_empty=False)
    return _segmenter("pspnet", backbone, num_classes, input_shape, backbone_weights,
                      output_stride, auxiliary_head, name, (4, 5),
                      lambda maps: _psp(maps[5], num_classes, pool_scales))


def LRASPP(backbone="MobileNetV3Large", num_classes: int = 21, input_shape=None,
           backbone_weights="imagenet", *, output_stride: int = 16, name: str | None = None):
    """LR-ASPP (MobileNetV3 paper §6.4, torchvision's ``lraspp_mobilenet_v3_large``): the
    stride-8 map (``P3``) and the last map at ``output_stride`` (default 16: the last
    stage dilated). Arguments as :func:`DeepLabV3`; no auxiliary head."""
    return _segmenter("lraspp", backbone, num_classes, input_shape, backbone_weights,
                      output_stride, False, name, (3, 5),
                      lambda maps: _lraspp(maps[3], maps[5], num_classes))
