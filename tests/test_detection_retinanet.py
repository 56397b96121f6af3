"""RetinaNet's FPN upsampling (exact to mmdet, delegate-friendly in TFLite).

mmdet 2.x ``FPN`` upsamples with ``F.interpolate(laterals[i], size=prev_shape,
mode='nearest')`` (``upsample_cfg`` has no ``scale_factor``): PyTorch's legacy nearest,
output index ``i`` reads input index ``min(floor(i * (in / out)), in - 1)`` with the
scale in float32 (``output == 2 * input`` is special-cased to ``i >> 1``).
:func:`keras_mobile.detection.retinanet.upsample_nearest` must equal it for every
size the FPN can meet, even and odd, and must lower in TFLite to ops XNNPACK runs, so
that a float32 RetinaNet is one delegate partition (``UpSampling2D`` gave a rank-5
reshape + TILE per upsampling: 5 partitions).
"""

import keras
import numpy as np
import pytest

from keras_mobile import detection
from keras_mobile.data.samples import synthetic_images
from keras_mobile.detection import retinanet
from keras_mobile.detection.export import DetectionTolerance, export_detector
from keras_mobile.tflite import inspect


def _torch_nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """PyTorch's ``nearest_idx`` (aten/src/ATen/native/UpSample.h), scale from size=."""
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:
        return np.arange(out_size) >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    index = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(int)
    return np.minimum(index, in_size - 1)


def _reference(x, size):
    rows = _torch_nearest_index(x.shape[1], size[0])
    cols = _torch_nearest_index(x.shape[2], size[1])
    return x[:, rows][:, :, cols]


def _tiny_backbone(size: int):
    """A strided stem and depthwise-separable blocks marking P3, P4, P5."""
    inputs = keras.Input((size, size, 3), name="input")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(16, 4, strides=4, use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_act")(x)
    for i, filters in enumerate((24, 32, 48), start=1):  # strides 8, 16, 32
        x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False,
                                         name=f"block{i}_dw")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_dw_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"block{i}_dw_act")(x)
        x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"block{i}_pw")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_pw_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"block{i}_pw_act")(x)
        x = keras.layers.Identity(name=f"P{i + 2}")(x)
    return keras.Model(inputs, x, name="tiny")


# (input h, w) -> output: exact 2x (even and odd inputs: 800 px gives P5 25 -> 50) and
# 2x - 1 (an odd map that the next level halved with ceil).
SIZES = [((4, 4), (8, 8)), ((5, 3), (10, 6)), ((25, 42), (50, 84)), ((1, 1), (2, 2)),
         ((13, 21), (25, 41)), ((7, 4), (13, 8)), ((2, 5), (4, 9))]


@pytest.mark.parametrize(("shape", "size"), SIZES)
def test_upsampling_is_pytorch_nearest(shape, size):
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=(2, *shape, 3)).astype(np.float32)
    inputs = keras.Input((*shape, 3))
    model = keras.Model(inputs, retinanet.upsample_nearest(inputs, size, name="up"))
    got = np.asarray(model(x))
    assert got.shape == (2, *size, 3)
    np.testing.assert_array_equal(got, _reference(x, size))
    assert model.layers[-1].name == "up"


def test_upsampling_refuses_other_sizes():
    inputs = keras.Input((4, 4, 3))
    with pytest.raises(ValueError, match="twice the input's sides"):
        retinanet.upsample_nearest(inputs, (12, 8), name="up")


def test_fpn_upsamples_exactly():
    keras.utils.set_random_seed(0)
    det = detection.RetinaNet(_tiny_backbone(128), num_classes=2, backbone_weights=None)
    names = [layer.name for layer in det.layers]
    assert "fpn4_upsample" in names and "fpn3_upsample" in names
    assert not any(isinstance(layer, keras.layers.UpSampling2D) for layer in det.layers)
    images = np.round(synthetic_images(1, (128, 128), seed=1))
    probe = keras.Model(det.input, [det.get_layer(f"fpn{lv}_upsample").output for lv in (4, 3)]
                        + [det.get_layer(f"fpn{lv}_add").input[0] for lv in (4, 3)]
                        + [det.get_layer("fpn5_lateral_conv").output,
                           det.get_layer("fpn4_add").output])
    up4, up3, lat4, lat3, top5, top4 = (np.asarray(t) for t in probe(images))
    assert up4.shape == lat4.shape == (1, 8, 8, 256) and up3.shape == lat3.shape
    np.testing.assert_array_equal(up4, _reference(top5, (8, 8)))
    np.testing.assert_array_equal(up3, _reference(top4, (16, 16)))


def test_float_retinanet_is_one_xnnpack_partition(tmp_path):
    keras.utils.set_random_seed(0)
    det = detection.RetinaNet(_tiny_backbone(128), num_classes=3, backbone_weights=None)
    images = np.round(synthetic_images(2, (128, 128), seed=2))
    with pytest.warns(UserWarning, match="detects anything"):  # untrained: nothing to compare
        report = export_detector(det, str(tmp_path / "raw.tflite"), labels=["a", "b", "c"],
                                 form="raw", check_data=images,
                                 tolerance=DetectionTolerance(0.0, 0.0))
    print(report)
    assert report.xnnpack_partitions == 1 and report.fully_delegated, report
    assert report.max_rank <= 4 and "TILE" not in report.ops, report.ops
    assert "RESIZE_NEAREST_NEIGHBOR" not in report.ops
    assert report.ops["CONCATENATION"] == 2 * 2 + 2  # 2 per upsampling, the 2 outputs
    info = inspect(report.path)
    assert info.high_rank_tensors == [] and max(info.tensors_by_rank) <= 4
