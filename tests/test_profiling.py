"""The profiler reproduces the published / official counts (see keras_mobile/profiling.py)."""

import keras
import pytest

import keras_mobile

# specs/mobilenext.md §7: conv+FC MACs of the official code at 224.
MOBILENEXT_MACS = {0.35: 75.14, 0.5: 103.26, 0.75: 207.93, 1.0: 311.34, 1.4: 588.32}


@pytest.mark.parametrize("alpha", sorted(MOBILENEXT_MACS))
def test_mobilenext_macs(alpha):
    profile = keras_mobile.profile(keras_mobile.MobileNeXt(alpha=alpha, weights=None))
    assert round(profile.macs / 1e6, 2) == MOBILENEXT_MACS[alpha]


def test_published_mobilenet_v2_and_efficientnet_b0():
    v2 = keras_mobile.profile(keras_mobile.MobileNetV2(weights=None))
    b0 = keras_mobile.profile(keras_mobile.EfficientNetB0(weights=None))
    assert round(v2.macs / 1e6, 2) == 300.77  # "300M" (paper), 300.77M counted on keras
    assert round(b0.macs / 1e6, 2) == 385.81  # "0.39B" (paper)
    sandglass = keras_mobile.profile(keras_mobile.EfficientNetB0Sandglass(weights=None))
    assert round(sandglass.macs / 1e6, 1) == 330.2  # specs/mobilenext.md §6


def test_per_layer_table_and_memory_on_a_hand_counted_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)  # 8*8*4*27 = 6912
    x = keras.layers.BatchNormalization(name="bn")(x)  # 2 per element: 512
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)  # 8*8*4*9 = 2304
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(5, name="fc")(x)  # 20
    profile = keras_mobile.profile(keras.Model(inputs, x))
    assert profile.macs == 6912 + 2304 + 20
    assert profile.macs_by_type == {"conv": 9216, "dense": 20, "attention_matmul": 0,
                                    "normalization": 512}
    assert profile.fvcore_flops == 9216 + 20 + 512
    conv = profile.layers[0]
    assert (conv.name, conv.output_shape, conv.params, conv.macs) == ("conv", (8, 8, 4), 112, 6912)
    assert conv.bytes_moved == 4 * (8 * 8 * 3 + 8 * 8 * 4 + 112)
    assert conv.arithmetic_intensity == pytest.approx(6912 / conv.bytes_moved)
    # peak: the bn input (256 floats) and output (256) are alive together
    assert profile.peak_activation_bytes == 4 * (256 + 256)
    assert profile.activation_bytes == 4 * (192 + 256 * 3 + 4 + 5)
    assert "conv" in profile.table() and "MACs 0.01M" in str(profile)


def test_profile_rejects_non_models():
    with pytest.raises(TypeError, match="model must be a functional keras.Model"):
        keras_mobile.profile("EMO1M")
