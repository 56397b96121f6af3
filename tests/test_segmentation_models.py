"""DeepLabV3 / PSPNet / LR-ASPP: the papers' configurations (params, MACs), the graph's
parts against their PyTorch definitions (adaptive pooling, bilinear resize), output
stride, and argument errors."""

import keras
import numpy as np
import pytest

import keras_mobile
from keras_mobile import features
from keras_mobile.segmentation import models

# EMO Table 9 at 512x512, 150 classes: (trainable params, conv MACs of the inference
# graph). The paper prints params truncated to 0.1M (the auxiliary FCN head included,
# as mmcv counts every parameter of the model) and FLOPs rounded to 0.1G.
TABLE9 = {
    ("DeepLabV3", "EMO1M"): (5_653_188, 2.38, "5.6M", "2.4G"),
    ("DeepLabV3", "EMO2M"): (6_967_156, 3.36, "6.9M", "3.5G"),
    ("DeepLabV3", "EMO5M"): (10_355_828, 5.81, "10.3M", "5.8G"),
    ("PSPNet", "EMO1M"): (4_374_724, 2.02, "4.3M", "2.1G"),
    ("PSPNet", "EMO2M"): (5_557_620, 2.96, "5.5M", "3.1G"),
    ("PSPNet", "EMO5M"): (8_585_844, 5.31, "8.5M", "5.3G"),
}
# mmseg FCNHead(in, 256, num_convs=1) + conv_seg(256 -> 150): 3x3 conv, BN, classifier.
AUX_PARAMS = {"EMO1M": 9 * 80 * 256 + 512 + 256 * 150 + 150,
              "EMO2M": 9 * 120 * 256 + 512 + 256 * 150 + 150,
              "EMO5M": 9 * 160 * 256 + 512 + 256 * 150 + 150}


@pytest.mark.parametrize("head,backbone", sorted(TABLE9))
def test_table9_params_and_macs(head, backbone):
    params, gmacs, paper_params, _ = TABLE9[(head, backbone)]
    seg = getattr(keras_mobile.segmentation, head)(backbone, num_classes=150,
                                                   input_shape=(512, 512, 3),
                                                   backbone_weights=None)
    profile = keras_mobile.profile(seg)
    assert profile.trainable_params == params
    assert f"{int(params / 1e5) / 10}M" == paper_params  # truncated, as the paper prints
    aux = sum(int(np.prod(w.shape)) for layer in seg.layers if layer.name.startswith("aux_")
              for w in layer.trainable_weights)
    assert aux == AUX_PARAMS[backbone]
    inference = keras_mobile.profile(seg.inference_model())
    assert inference.trainable_params == params - aux
    assert round(inference.macs_by_type["conv"] / 1e9, 2) == gmacs
    assert seg.output["logits"].shape[1:] == (512, 512, 150)
    assert seg.output["aux_logits"].shape[1:] == (512, 512, 150)


def test_lraspp_is_torchvision_lraspp_mobilenet_v3_large():
    # torchvision.models.segmentation.lraspp_mobilenet_v3_large(num_classes=21): 3,221,538
    seg = keras_mobile.segmentation.LRASPP("MobileNetV3Large", num_classes=21,
                                           backbone_weights=None)
    assert keras_mobile.profile(seg).trainable_params == 3_221_538
    assert seg.get_layer("P5").output.shape[1:3] == (32, 32)  # output stride 16 at 512
    assert seg.get_layer("decode_low_classifier").input.shape[-1] == 40  # the stride-8 map
    assert "aux_logits" not in seg.output


def _torch_adaptive_avg_pool(x, size):
    """PyTorch's AdaptiveAvgPool2d on [H, W, C] (its bins, in numpy)."""
    height, width = x.shape[:2]
    out = np.zeros((size, size, x.shape[2]))
    for i in range(size):
        for j in range(size):
            h0, h1 = i * height // size, -(-(i + 1) * height // size)
            w0, w1 = j * width // size, -(-(j + 1) * width // size)
            out[i, j] = x[h0:h1, w0:w1].mean(axis=(0, 1))
    return out


def _torch_bilinear(x, size):
    """PyTorch's F.interpolate(mode="bilinear", align_corners=False) on [H, W, C]."""
    def weights(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        low = np.minimum(np.floor(src).astype(int), n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), low] += 1 - (src - low)
        m[np.arange(n_out), high] += src - low
        return m
    return np.einsum("ih,hwc,jw->ijc", weights(x.shape[0], size[0]), x,
                     weights(x.shape[1], size[1]))


@pytest.mark.parametrize("height,width,size", [(16, 16, 3), (16, 16, 6), (16, 12, 2),
                                               (10, 7, 6), (8, 8, 1)])
def test_adaptive_average_pool_is_pytorchs(height, width, size):
    x = np.random.default_rng(0).normal(size=(1, height, width, 5)).astype(np.float32)
    inputs = keras.Input((height, width, 5))
    model = keras.Model(inputs, models.adaptive_average_pool(inputs, size, name="pool"))
    assert not model.trainable_weights  # the bins' weights are constants
    np.testing.assert_allclose(model(x)[0], _torch_adaptive_avg_pool(x[0], size), atol=1e-5)


@pytest.mark.parametrize("source,target", [((1, 1), (16, 16)), ((3, 3), (16, 16)),
                                           ((4, 4), (128, 128)), ((6, 5), (16, 16))])
def test_resize_is_pytorchs_bilinear(source, target):
    x = np.random.default_rng(1).normal(size=(1, *source, 3)).astype(np.float32)
    inputs = keras.Input((*source, 3))
    model = keras.Model(inputs, models.resize(inputs, target, name="up"))
    np.testing.assert_allclose(model(x)[0], _torch_bilinear(x[0], target), atol=1e-5)


@pytest.mark.parametrize("name", ["MobileNetV2", "MobileNetV3Small", "MobileNeXt"])
def test_output_stride_dilates_the_last_stages(name):
    backbone = getattr(keras_mobile, name)(include_top=False, weights=None,
                                           input_shape=(128, 128, 3))
    os16 = features.with_output_stride(backbone, 16)
    os8 = features.with_output_stride(backbone, 8)
    assert [os16.get_layer(f"P{lv}").output.shape[1] for lv in (3, 4, 5)] == [16, 8, 8]
    assert [os8.get_layer(f"P{lv}").output.shape[1] for lv in (3, 4, 5)] == [16, 16, 16]
    for a, b in zip(backbone.get_weights(), os16.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(2).uniform(0, 255, (1, 128, 128, 3)).astype(np.float32)
    # Up to stage 3 (stride 16) nothing changed: the same map.
    p4 = keras.Model(backbone.inputs, backbone.get_layer("P4").output)(x)
    p4_16 = keras.Model(os16.inputs, os16.get_layer("P4").output)(x)
    np.testing.assert_allclose(p4, p4_16, atol=1e-4)
    dilations = {layer.dilation_rate for layer in os8.layers if hasattr(layer, "dilation_rate")
                 and max(layer.kernel_size) > 1}
    assert dilations == {(1, 1), (2, 2), (4, 4)}


def test_deeplabv3_mobile_configuration():
    """Model Garden's mobile DeepLabv3: MobileNetV2 at output stride 16, ASPP without
    atrous branches (a 1x1 conv and image pooling), 1x1 projection."""
    seg = keras_mobile.segmentation.DeepLabV3(
        "MobileNetV2", num_classes=21, input_shape=(512, 512, 3), backbone_weights=None,
        output_stride=16, dilations=(1,), bottleneck_kernel_size=1, auxiliary_head=False)
    names = [layer.name for layer in seg.layers]
    assert "decode_aspp0_conv" in names and "decode_aspp1_conv" not in names
    assert seg.get_layer("decode_bottleneck_conv").kernel_size == (1, 1)
    assert seg.get_layer("P5").output.shape[1:3] == (32, 32)
    assert list(seg.output) == ["logits"]


def test_predict_masks():
    seg = keras_mobile.segmentation.PSPNet("MobileNetV3Small", num_classes=4,
                                           input_shape=(64, 64, 3), backbone_weights=None)
    images = np.random.default_rng(3).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    masks = seg.predict_masks(images)
    assert masks.shape == (2, 64, 64) and masks.dtype == np.uint8
    logits = seg.inference_model().predict(images, verbose=0)
    np.testing.assert_array_equal(masks, logits.argmax(-1))
    assert seg.num_classes == 4 and seg.image_size == (64, 64)


@pytest.mark.parametrize("call,message", [
    (lambda: keras_mobile.segmentation.DeepLabV3("EMO1M", input_shape=(500, 500, 3),
                                                 backbone_weights=None),
     r"input_shape must be \(height, width, 3\) with height and width multiples of 32"),
    (lambda: keras_mobile.segmentation.DeepLabV3("EMO1M", output_stride=16,
                                                 backbone_weights=None),
     "output_stride must be 32 for a backbone with window attention"),
    (lambda: keras_mobile.segmentation.PSPNet("EMO1M", output_stride=4, backbone_weights=None),
     r"output_stride must be one of \[8, 16, 32\]. Received: output_stride=4"),
    (lambda: keras_mobile.segmentation.DeepLabV3("EMO1M", dilations=(), backbone_weights=None),
     "dilations must be a non-empty tuple of integers >= 1"),
    (lambda: keras_mobile.segmentation.PSPNet("EMO1M", num_classes=0, backbone_weights=None),
     "num_classes must be a positive integer"),
    (lambda: keras_mobile.segmentation.LRASPP("EMO1M", backbone_weights="imagnet"),
     "weights must be None"),
    (lambda: keras_mobile.segmentation.LRASPP(
        keras.Model(inp := keras.Input((64, 64, 3)),
                    keras.layers.Identity(name="P5")(keras.layers.Conv2D(
                        4, 3, strides=32, padding="same")(inp))), backbone_weights=None),
     r"backbone must mark the feature maps P3, P5 .* it marks \[5\]"),
])
def test_bad_arguments(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
