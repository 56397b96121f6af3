"""SSDLite / RetinaNet graphs, anchors and box coder (keras_mobile.detection).

Golden numbers are measured with keras_mobile.profile; the paper's (EMO, ICCV 2023,
Table 8 and the official README) are compared the way they are written there:
parameters are PyTorch's count (Keras' ``trainable_params``: BN moving statistics are
buffers in PyTorch) truncated to 0.1M, as the paper truncates its classifiers'
(EMO-1M 1,361,168 -> "1.3M"); see the module docstrings for the FLOPs conventions.
"""

import functools
import math
import re

import keras
import numpy as np
import pytest

import keras_mobile
from keras_mobile import detection
from keras_mobile.detection import anchors as anchors_lib
from keras_mobile.detection import box_coder


@functools.cache
def _ssd(backbone):
    return detection.SSDLite(backbone, num_classes=80, backbone_weights=None)


@functools.cache
def _retinanet(backbone, input_shape=(320, 320, 3)):
    return detection.RetinaNet(backbone, num_classes=80, backbone_weights=None,
                               input_shape=input_shape)


def _checksum(boxes) -> float:
    """Position-weighted sum: any changed value or order changes it."""
    a = np.asarray(boxes, np.float64)
    return float((a * (np.arange(a.size) % 97 + 1).reshape(a.shape)).sum())


# --- model graphs: exact counts, and the paper's figures -----------------------------------

# backbone: (params, trainable params, MACs, conv MACs) at 320x320, 80 classes; the paper's
# params (0.1M, truncated) and FLOPs (0.1G, rounded).
SSDLITE = {
    "EMO1M": ((2_330_844, 2_311_980, 584_905_280, 554_249_312), 23, 6),
    "EMO2M": ((3_365_804, 3_342_716, 968_870_976, 919_698_496), 33, 9),
    "EMO5M": ((6_108_844, 6_076_540, 1_949_112_896, 1_835_192_896), 60, 18),
    # MobileNetV2 paper: 4.3M / 0.8B. Not the 4.3M: its TF Object Detection API layout has
    # 3 anchors (not 6) on the stride-16 level, 576 * 255 + 255 + ... = 147,135 parameters
    # fewer (4,337,013 trainable with 80 classes); 0.85G MACs round to its 0.8 all the same.
    "MobileNetV2": ((4_534_900, 4_484_148, 847_582_144, 847_582_144), None, 8),
}


@pytest.mark.parametrize("backbone", sorted(SSDLITE))
def test_ssdlite_counts(backbone):
    (params, trainable, macs, conv_macs), paper_params, paper_flops = SSDLITE[backbone]
    profile = keras_mobile.profile(_ssd(backbone))
    assert (profile.params, profile.trainable_params) == (params, trainable)
    assert (profile.macs, profile.macs_by_type["conv"]) == (macs, conv_macs)
    if paper_params is not None:
        assert trainable // 100_000 == paper_params
    # The SSDLite FLOPs of the paper leave out EMO's attention matmuls (q @ k^T, attn @ v:
    # 31M / 49M / 114M here), which mmcv's module-hook counter (mmdet's get_flops.py) does
    # not see: the convolutions' MACs round to 0.6 / 0.9 / 1.8G, all MACs to 0.6 / 1.0 / 1.9.
    assert round(conv_macs / 1e8) == paper_flops


# backbone: (params, trainable, MACs at 320x320, MACs at 800x1344); paper params (0.1M,
# truncated) and GFLOPs (truncated): 1333x800 images, padded to multiples of 32 as mmdet does.
RETINANET = {
    "EMO1M": ((10_487_900, 10_479_244, 15_612_768_896, 163_764_584_400), 104, 163),
    "EMO2M": ((11_568_236, 11_555_644, 15_992_536_192, 167_719_067_520), 115, 167),
    "EMO5M": ((14_461_804, 14_440_508, 16_978_678_912, 178_628_359_296), 144, 178),
}


@pytest.mark.parametrize("backbone", sorted(RETINANET))
def test_retinanet_counts(backbone):
    (params, trainable, macs_320, macs_1344), paper_params, paper_gflops = RETINANET[backbone]
    small = keras_mobile.profile(_retinanet(backbone))
    assert (small.params, small.trainable_params, small.macs) == (params, trainable, macs_320)
    assert trainable // 100_000 == paper_params
    large = keras_mobile.profile(_retinanet(backbone, (800, 1344, 3)))  # symbolic: ~1.5 s
    assert (large.params, large.macs) == (params, macs_1344)
    assert large.macs // 10**9 == paper_gflops


def test_profile_counts_the_shared_retinanet_head_on_every_level():
    rows = {row.name: row for row in keras_mobile.profile(_retinanet("EMO1M")).layers}
    locations = 40 * 40 + 20 * 20 + 10 * 10 + 5 * 5 + 3 * 3  # P3 ... P7 at 320
    assert rows["head_cls1_conv"].macs == 256 * 256 * 9 * locations
    assert rows["head_cls_conv"].macs == 256 * 9 * 80 * 9 * locations
    assert rows["head_cls1_conv"].params == 256 * 256 * 9 + 256  # once, not per level


def test_ssdlite_outputs_and_layer_names():
    det = _ssd("EMO1M")
    out = det(np.zeros((1, 320, 320, 3), "float32"))
    assert tuple(out["box_encodings"].shape) == (1, 3234, 4)
    assert tuple(out["class_logits"].shape) == (1, 3234, 81)
    assert np.isfinite(np.asarray(out["class_logits"])).all()
    names = [layer.name for layer in det.layers]
    for i in range(1, 7):
        for part in ("cls_dw_conv", "cls_dw_bn", "cls_dw_act", "cls_conv", "box_dw_conv",
                     "box_conv", "box_reshape"):
            assert f"head{i}_{part}" in names
    for i in range(1, 5):
        for part in ("reduce_conv", "reduce_act", "dw_pad", "dw_conv", "dw_act", "expand_conv",
                     "expand_bn", "expand_act"):
            assert f"extra{i}_{part}" in names
    auto = re.compile(r"^(conv2d|depthwise_conv2d|batch_normalization|re_lu|reshape|"
                      r"concatenate|activation|zero_padding2d)(_\d+)?$")
    assert not [n for n in names if auto.match(n)]
    # The mmdet neck: 1x1 to out / 2, depthwise 3x3 stride 2 padding 1, 1x1 to out.
    assert det.get_layer("extra1_reduce_conv").output.shape[-1] == 256
    assert det.get_layer("extra1_dw_pad").padding == ((1, 1), (1, 1))
    assert det.get_layer("extra1_expand_conv").output.shape[-1] == 512
    assert det.get_layer("extra1_dw_bn").momentum == pytest.approx(0.97)
    assert det.get_layer("extra1_dw_bn").epsilon == pytest.approx(1e-3)


def test_retinanet_outputs_and_init():
    det = _retinanet("EMO1M")
    assert tuple(det.output["box_encodings"].shape) == (None, 19206, 4)
    assert tuple(det.output["class_logits"].shape) == (None, 19206, 80)
    bias = det.get_layer("head_cls_conv").bias.numpy()
    np.testing.assert_allclose(bias, -math.log(99), rtol=1e-6)  # prior probability 0.01
    assert not det.get_layer("head_box_conv").bias.numpy().any()
    assert [tuple(det.get_layer(f"fpn{lv}_output_conv").output.shape[1:]) for lv in (3, 4, 5)] \
        == [(40, 40, 256), (20, 20, 256), (10, 10, 256)]
    assert det.get_layer("fpn6_conv").input.shape[-1] == 168  # on the input: stage 4 (EMO-1M)


def test_ssdlite_feature_layers():
    # EMO: stage 3 / stage 4 outputs (mmdet out_indices=(3, 4)): P4 / P5, before the
    # classifier's final norm.
    assert detection.ssd_feature_layers(_ssd("EMO1M")) == ("P4", "P5")
    # MobileNetV2: the expansion of "layer 15" and the 1280 top conv (MobileNetV2 paper).
    mnv2 = _ssd("MobileNetV2")
    assert detection.ssd_feature_layers(mnv2) == ("block6a_expand_act", "P5")
    assert mnv2.get_layer("head1_cls_dw_conv").input.shape[1:] == (20, 20, 576)
    assert mnv2.get_layer("head2_cls_dw_conv").input.shape[1:] == (10, 10, 1280)
    # MobileNeXt: the official SSDLite's 576 / 1280 maps.
    mnext = keras_mobile.MobileNeXt(include_top=False, weights=None, input_shape=(320, 320, 3))
    assert detection.ssd_feature_layers(mnext) == ("block6a_expand_act", "block8a_expand_act")


def _tiny_backbone(size=320, levels=(4, 5)):
    """A model with P4 / P5 markers, as any keras_mobile backbone has them."""
    height, width = (size, size) if isinstance(size, int) else size
    inputs = keras.Input((height, width, 3), name="input")
    x = keras.layers.Conv2D(8, 3, strides=16, padding="same", name="stem_conv")(inputs)
    if 4 in levels:
        x = keras.layers.Identity(name="P4")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="block1a_conv")(x)
    if 5 in levels:
        x = keras.layers.Identity(name="P5")(x)
    return keras.Model(inputs, x, name="tiny")


def test_ssdlite_on_a_backbone_model():
    det = detection.SSDLite(_tiny_backbone(), num_classes=3, backbone_weights=None)
    assert tuple(det.output["class_logits"].shape) == (None, 3234, 4)
    assert det.get_layer("head1_cls_dw_conv").input.shape[-1] == 8
    assert det.name == "ssdlite_tiny"


def test_ssdlite_sizes_305_to_320_give_the_anchor_maps():
    maps = [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    det = detection.SSDLite("MobileNet", input_shape=(305, 320, 3), backbone_weights=None)
    assert anchors_lib.feature_sizes(det) == maps
    det = detection.SSDLite(_tiny_backbone((320, 311)), backbone_weights=None)
    assert anchors_lib.feature_sizes(det) == maps


# --- errors, before anything is built ------------------------------------------------------

SSD_RULE = ("input_shape must be (height, width, 3) with height and width in 305..320, whose "
            "maps are the 20, 10, 5, 3, 2, 1 of the SSDLite anchors (strides 16 ... 320 of a "
            "320x320 input; 320 is the trained size).")


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(backbone="EMO3M"), ValueError,
     "backbone must be the name of a keras_mobile model or a keras.Model. "
     "Received: backbone='EMO3M'. Did you mean EMO6M, EMO5M, EMO2M? Available: EMO10M, "),
    (dict(backbone=3), TypeError,
     "backbone must be the name of a keras_mobile model or a keras.Model. Received: backbone=3."),
    (dict(num_classes=0), ValueError,
     "num_classes must be a positive integer. Received: num_classes=0."),
    (dict(num_classes="80"), TypeError,
     "num_classes must be a positive integer. Received: num_classes='80'."),
    (dict(num_classes=True), TypeError,
     "num_classes must be a positive integer. Received: num_classes=True."),
    (dict(input_shape=(300, 300, 3)), ValueError, SSD_RULE[:-1] + ". Received: "
     "input_shape=(300, 300, 3)."),
    (dict(input_shape=(640, 640, 3)), ValueError, "Received: input_shape=(640, 640, 3)."),
    (dict(input_shape=(320, 320)), ValueError,
     "input_shape must be a static tuple (height, width, 3) of integers. "
     "Received: input_shape=(320, 320)."),
    (dict(name=5), TypeError, "name must be a string or None. Received: name=5."),
])
def test_ssdlite_argument_errors(kwargs, error, message):
    with pytest.raises(error) as info:
        detection.SSDLite(**{"backbone_weights": None, **kwargs})
    assert message in str(info.value)


def test_backbone_model_errors():
    with pytest.raises(ValueError) as info:
        detection.SSDLite(_tiny_backbone(levels=(5,)), backbone_weights=None)
    assert str(info.value) == (
        "backbone must mark the feature maps P4, P5 (Identity layers named P{level} at stride "
        "2**level, as every keras_mobile model does); it marks [5]. Received: backbone='tiny'.")
    with pytest.raises(ValueError, match=r"backbone_weights must be None when backbone is a "
                                         r"keras.Model .*Received: backbone_weights='imagenet'"):
        detection.SSDLite(_tiny_backbone(), backbone_weights="imagenet")
    with pytest.raises(ValueError, match=r"input_shape must be None or the backbone's input "
                                         r"shape \(320, 320, 3\). Received: input_shape="):
        detection.SSDLite(_tiny_backbone(), input_shape=(310, 310, 3), backbone_weights=None)
    with pytest.raises(ValueError) as info:
        detection.SSDLite(_tiny_backbone(224), backbone_weights=None)
    assert str(info.value) == (SSD_RULE[:-1] + ". Received: input_shape=(224, 224, 3). "
                               "(the input shape of backbone 'tiny').")
    with pytest.raises(ValueError, match=r"backbone must mark the feature maps P3, P4, P5"):
        detection.RetinaNet(_tiny_backbone(), backbone_weights=None)


def test_retinanet_size_errors():
    with pytest.raises(ValueError) as info:
        detection.RetinaNet("EMO1M", input_shape=(330, 320, 3), backbone_weights=None)
    assert str(info.value) == (
        "input_shape must be (height, width, 3) with height and width multiples of 32 (mmdet "
        "pads every image to a multiple of 32; the official size is 1333x800, padded "
        "1344x800). Received: input_shape=(330, 320, 3).")


# --- anchors --------------------------------------------------------------------------------


def test_ssd_anchors_are_mmdets():
    anchors = detection.ssd_anchors()
    assert anchors.shape == (3234, 4) and anchors.dtype == np.float32
    # First anchor of each level (ymin, xmin, ymax, xmax): min_size around stride / 2.
    starts = np.cumsum([0] + [n * n * 6 for n in (20, 10, 5, 3, 2)])
    np.testing.assert_array_equal(anchors[starts], [
        [-16, -16, 32, 32], [-34, -34, 66, 66], [-43, -43, 107, 107],
        [-47.5, -47.5, 154.5, 154.5], [-46.5, -46.5, 206.5, 206.5], [8, 8, 312, 312]])
    # One location: min, sqrt(min * max), then ratios (h / w) 1/2, 2, 1/3, 3.
    h = anchors[:6, 2] - anchors[:6, 0]
    w = anchors[:6, 3] - anchors[:6, 1]
    np.testing.assert_allclose(h, [48, math.sqrt(48 * 100), 48 / math.sqrt(2), 48 * math.sqrt(2),
                                   48 / math.sqrt(3), 48 * math.sqrt(3)], rtol=1e-6)
    np.testing.assert_allclose(h * w, [48 * 48, 48 * 100] + [48 * 48] * 4, rtol=1e-6)
    # The second location is one stride (16 px) to the right.
    np.testing.assert_array_equal(anchors[6], [-16, 0, 32, 48])
    # mmdet 2.x SSDAnchorGenerator(strides=[16, 32, 64, 107, 160, 320], ...).grid_priors of
    # the EMO configs (run once on the EMO repo's mmdet code), to the bit.
    assert _checksum(anchors) == 101518548.04403973


def test_retinanet_anchors_are_mmdets():
    anchors = detection.retinanet_anchors([40, 20, 10, 5, 3])
    assert anchors.shape == (19206, 4)
    np.testing.assert_array_equal(anchors[3], [-16, -16, 16, 16])  # ratio 1, scale 4 at P3
    h, w = anchors[:9, 2] - anchors[:9, 0], anchors[:9, 3] - anchors[:9, 1]
    np.testing.assert_allclose(h / w, np.repeat([0.5, 1, 2], 3), rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(h * w), np.tile(32 * 2 ** (np.arange(3) / 3), 3),
                               rtol=1e-6)
    assert _checksum(anchors) == 580862477.5269709  # mmdet AnchorGenerator, to the bit
    rect = detection.retinanet_anchors([(25, 42), (13, 21), (7, 11), (4, 6), (2, 3)])
    assert _checksum(rect) == 325898252.5686407


def test_anchors_for_a_model_follow_its_maps():
    det = _ssd("EMO1M")
    assert anchors_lib.feature_sizes(det) == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    np.testing.assert_array_equal(detection.anchors_for(det), detection.ssd_anchors())
    retina = _retinanet("EMO1M", (800, 1344, 3))
    assert anchors_lib.feature_sizes(retina) == [(100, 168), (50, 84), (25, 42), (13, 21),
                                                 (7, 11)]
    assert detection.anchors_for(retina).shape == (201_600, 4)
    assert retina.output["class_logits"].shape[1] == 201_600
    with pytest.raises(ValueError, match="model must be a keras_mobile.detection SSDLite or "
                                         "RetinaNet. Received: model='tiny'."):
        detection.anchors_for(_tiny_backbone())


def test_center_normalized_anchors():
    centers = detection.to_center_normalized(detection.ssd_anchors(), 320)
    np.testing.assert_allclose(centers[0], [0.025, 0.025, 0.15, 0.15], rtol=1e-6)
    np.testing.assert_allclose(centers[-6], [0.5, 0.5, 0.95, 0.95], rtol=1e-6)
    wide = detection.to_center_normalized([[0, 0, 10, 40]], (20, 80))
    np.testing.assert_allclose(wide, [[0.25, 0.25, 0.5, 0.5]])


# --- box coder ------------------------------------------------------------------------------


def test_box_coder_known_encoding():
    assert box_coder.tflite_scales() == (10.0, 10.0, 5.0, 5.0)
    # Box center (10, 20), size 20 x 40 on anchor center (5, 5), size 10 x 10:
    # ((10 - 5) / 10 / 0.1, (20 - 5) / 10 / 0.1, log(2) / 0.2, log(4) / 0.2).
    encoded = np.asarray(detection.encode([[0.0, 0.0, 20.0, 40.0]], [[0.0, 0.0, 10.0, 10.0]]))
    np.testing.assert_allclose(encoded, [[5, 15, math.log(2) / 0.2, math.log(4) / 0.2]],
                               rtol=1e-6)
    # On the first SSD anchor (center 8, size 48): box center (12, 24), size 24 x 48.
    encoded = np.asarray(detection.encode([[0.0, 0.0, 24.0, 48.0]], detection.ssd_anchors()[:1]))
    np.testing.assert_allclose(encoded, [[4 / 48 / 0.1, 16 / 48 / 0.1, math.log(0.5) / 0.2, 0]],
                               rtol=1e-6, atol=1e-6)
    # RetinaNet's stds are 1.
    encoded = np.asarray(detection.encode([[0.0, 0.0, 20.0, 40.0]], [[0.0, 0.0, 10.0, 10.0]],
                                          stds=box_coder.RETINANET_STDS))
    np.testing.assert_allclose(encoded, [[0.5, 1.5, math.log(2), math.log(4)]], rtol=1e-6)


def test_box_coder_round_trip():
    rng = np.random.default_rng(0)
    anchors = detection.ssd_anchors()
    center = rng.uniform(0, 320, (len(anchors), 2))
    size = rng.uniform(8, 300, (len(anchors), 2))  # within mmdet's clamp: 1/62.5 .. 62.5x
    boxes = np.concatenate([center - size / 2, center + size / 2], -1).astype("float32")
    decoded = np.asarray(detection.decode(detection.encode(boxes, anchors), anchors))
    np.testing.assert_allclose(decoded, boxes, atol=1e-4, rtol=0)
    # Without the clamp any size comes back (a 2 px box on the 423 px anchors).
    tiny = np.concatenate([center - 1, center + 1], -1).astype("float32")
    decoded = detection.decode(detection.encode(tiny, anchors), anchors, max_ratio=None)
    np.testing.assert_allclose(np.asarray(decoded), tiny, atol=1e-4, rtol=0)
    # Batched, as tensors, as the model's [B, N, 4] encodings.
    batched = detection.decode(keras.ops.stack([detection.encode(boxes, anchors)] * 2), anchors)
    np.testing.assert_allclose(np.asarray(batched)[1], boxes, atol=1e-4, rtol=0)


def test_box_coder_clamps_sizes_as_mmdet():
    anchor = [[0.0, 0.0, 10.0, 10.0]]
    huge = np.asarray(detection.decode([[0.0, 0.0, 100.0, 100.0]], anchor))
    np.testing.assert_allclose(huge[0, 2] - huge[0, 0], 10 * 1000 / 16, rtol=1e-5)
    unclamped = np.asarray(detection.decode([[0.0, 0.0, 1.0, 1.0]], anchor, max_ratio=None))
    np.testing.assert_allclose(unclamped[0, 2] - unclamped[0, 0], 10 * math.exp(0.2), rtol=1e-6)
