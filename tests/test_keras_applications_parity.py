"""keras_mobile's MobileNet V1/V2/V3 and EfficientNet against keras.applications.

keras' model (``weights=None``, BN statistics and biases randomized) is copied
into ours by layer order; parameter counts must be identical and the logits
equal (max |diff| <= 1e-5) in inference mode. Full-size builds check the
trainable parameter counts at 224 and at every EfficientNet variant.
"""

import keras
import numpy as np
import pytest

import keras_mobile
from keras_mobile.models import _common, efficientnet
from keras_mobile.weights.imagenet import copy_keras_application_weights

KA = keras.applications
# name: (ours, keras', knobs for both, keras-only kwargs, resolution of the parity check)
CASES = {
    "MobileNet": (keras_mobile.MobileNet, KA.MobileNet, {}, {}, 96),
    "MobileNet-0.5-dm2": (keras_mobile.MobileNet, KA.MobileNet,
                          {"alpha": 0.5, "depth_multiplier": 2}, {}, 96),
    "MobileNetV2": (keras_mobile.MobileNetV2, KA.MobileNetV2, {}, {}, 96),
    "MobileNetV3Small": (keras_mobile.MobileNetV3Small, KA.MobileNetV3Small, {},
                         {"include_preprocessing": False}, 96),
    "MobileNetV3Small-min-0.75": (keras_mobile.MobileNetV3Small, KA.MobileNetV3Small,
                                  {"minimalistic": True, "alpha": 0.75},
                                  {"include_preprocessing": False}, 96),
    "MobileNetV3Large": (keras_mobile.MobileNetV3Large, KA.MobileNetV3Large, {},
                         {"include_preprocessing": False}, 96),
    "EfficientNetB0": (keras_mobile.EfficientNetB0, KA.EfficientNetB0, {}, {}, 64),
}
# keras' EfficientNet Normalization layer: mean (3), variance (3), count (1).
NORMALIZATION_PARAMS = 7


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)  # keras' kernel initializers


def _is_efficientnet(name):
    return name.startswith("EfficientNet")


def _randomize(model, x, seed=0):
    """Random BN affine and biases (keras' init leaves them 1/0), then BN moving
    statistics calibrated on ``x`` (the test images) so that the signal survives
    every layer, also at 2x2 feature maps. With keras' init alone the logits do
    not depend on the input (they differ by ~1e-7 between two images), and equal
    outputs would prove nothing."""
    rng = np.random.default_rng(seed)
    norms = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.2, layer.beta.shape).astype("float32"))
            norms.append(layer)
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0.0, 0.2, layer.bias.shape).astype("float32"))
    # One training-mode pass (dropout off) normalizes every BN input by its batch
    # statistics; as moving statistics they make the inference pass as healthy.
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    rates = [layer.rate for layer in dropouts]
    for layer in dropouts:
        layer.rate = 0.0
    probe = keras.Model(model.input, [layer.input for layer in norms])
    for layer, h in zip(norms, probe(x, training=True), strict=True):
        h = np.asarray(h)
        layer.moving_mean.assign(h.mean(axis=(0, 1, 2)))
        variance = h.var(axis=(0, 1, 2))  # floored: no channel amplifies rounding errors
        layer.moving_variance.assign(variance + 0.01 * variance.mean())
    for layer, rate in zip(dropouts, rates, strict=True):
        layer.rate = rate


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _pair(name, size, **extra):
    ours_fn, keras_fn, knobs, keras_only, _ = CASES[name]
    shape = (size, size, 3)
    ka = keras_fn(weights=None, input_shape=shape, **knobs, **keras_only, **extra)
    ours = ours_fn(weights=None, input_shape=shape, include_preprocessing=False, **knobs,
                   **extra)
    return ka, ours


def _normalization_params(ka):
    return sum(layer.count_params() for layer in ka.layers
               if isinstance(layer, keras.layers.Normalization))


def _images(size, seed, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, (2, size, size, 3)).astype("float32")


def _max_diff(ka, ours, keras_x, ours_x, label):
    """max |ours - keras| in inference mode, on outputs that depend on the input."""
    want = np.asarray(ka(keras_x, training=False))
    got = np.asarray(ours(ours_x, training=False))
    assert got.shape == want.shape == (len(keras_x), 1000)
    spread = float(np.max(np.abs(want[0] - want[1])))
    delta = float(np.max(np.abs(got - want)))
    print(f"{label}: max |logit| {np.abs(want).max():.3g}, between images {spread:.3g}, "
          f"max |diff| {delta:.3g}")
    assert spread > 0.05  # the logits depend on the image: equal outputs mean something
    return delta


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_equal_after_copying_keras_weights(name):
    size = CASES[name][-1]
    ka, ours = _pair(name, size, classifier_activation=None)
    skipped = NORMALIZATION_PARAMS if _is_efficientnet(name) else 0
    assert _normalization_params(ka) == skipped
    assert ours.count_params() == ka.count_params() - skipped
    x = keras_x = _images(size, 1)
    if _is_efficientnet(name):  # keras divides by 255 before an identity Normalization
        keras_x = x * 255.0
        x = np.asarray(keras.layers.Rescaling(1 / 255)(keras_x))  # bit-identical to keras'
    _randomize(ka, keras_x)
    copy_keras_application_weights(ka, ours)
    if not _is_efficientnet(name):  # same order: plain set_weights changes nothing
        ours.set_weights(ka.get_weights())
        pairs = zip(ours.get_weights(), ka.get_weights(), strict=True)
        assert all(np.array_equal(a, b) for a, b in pairs)
    delta = _max_diff(ka, ours, keras_x, x, f"{name} ({ours.count_params()} params)")
    assert delta <= 1e-5


@pytest.mark.parametrize("name", list(CASES))
def test_trainable_params_equal_at_224(name):
    ka, ours = _pair(name, 224)
    assert _trainable(ours) == _trainable(ka)
    assert ours.count_params() == ka.count_params() - _normalization_params(ka)


@pytest.mark.parametrize("model", ["MobileNetV3Small", "MobileNetV3Large"])
def test_v3_preprocessing_equals_keras(model):
    ours_fn, keras_fn = getattr(keras_mobile, model), getattr(KA, model)
    ka = keras_fn(weights=None, input_shape=(96, 96, 3), include_preprocessing=True,
                  classifier_activation=None)
    ours = ours_fn(weights=None, input_shape=(96, 96, 3), include_preprocessing=True,
                   classifier_activation=None)
    raw = _images(96, 2, 0, 255)
    _randomize(ka, raw)
    ours.set_weights(ka.get_weights())
    assert _max_diff(ka, ours, raw, raw, f"{model}, [0, 255] input") <= 1e-4


def test_efficientnet_preprocessing_equals_keras_normalization():
    """Our Rescaling by the ImageNet mean/std computes keras' Rescaling(1/255) ->
    Normalization with the ImageNet statistics (keras' own weight file stores the
    standard deviations as "variance" and divides once more by sqrt(std), which
    is the same function; tensorflow/tensorflow#49930). Compared where the two
    preprocessings end: the rest of the network is the same (test above)."""
    ka = KA.EfficientNetB0(weights=None, input_shape=(64, 64, 3))
    ours = keras_mobile.EfficientNetB0(weights=None, input_shape=(64, 64, 3))
    norm = next(layer for layer in ka.layers if isinstance(layer, keras.layers.Normalization))
    mean = np.array(_common.IMAGENET_MEAN, "float32") / 255
    std = np.array(_common.IMAGENET_STD, "float32") / 255
    norm.set_weights([mean, std**2, np.array(0, norm.weights[2].dtype)])
    norm.finalize_state()  # Normalization caches its statistics
    raw = _images(64, 3, 0, 255)
    want = np.asarray(keras.Model(ka.input, norm.output)(raw))
    got = np.asarray(keras.Model(ours.input, ours.get_layer("rescaling").output)(raw))
    delta = float(np.max(np.abs(got - want)))
    print(f"EfficientNetB0 preprocessing: range [{want.min():.3g}, {want.max():.3g}], "
          f"max |diff| {delta:.3g}")
    assert want.min() < -1.5 and want.max() > 2.0
    assert delta <= 1e-5


@pytest.mark.parametrize("variant", [v for v in efficientnet.VARIANTS if v != "B0"])
def test_efficientnet_variants_match_keras_param_counts(variant):
    ka = getattr(KA, f"EfficientNet{variant}")(weights=None, input_shape=(64, 64, 3))
    ours = getattr(keras_mobile, f"EfficientNet{variant}")(weights=None, input_shape=(64, 64, 3))
    assert _trainable(ours) == _trainable(ka)
    assert ours.count_params() == ka.count_params() - NORMALIZATION_PARAMS
    assert len(ours.weights) == len(ka.weights) - 3


def test_scale_is_pure_and_matches_keras_rounding():
    b7 = efficientnet.scale(efficientnet.STAGES, 2.0, 3.1)
    assert efficientnet.STAGES[0].filters == 16  # the B0 table is untouched
    assert [s.filters for s in b7] == [32, 48, 80, 160, 224, 384, 640]
    assert [s.repeats for s in b7] == [4, 7, 7, 10, 10, 13, 4]


@pytest.mark.parametrize("builder, kwargs", [
    (keras_mobile.MobileNet, {"depth_multiplier": 2}),
    (keras_mobile.MobileNet, {"alpha": 0.35}),
    (keras_mobile.MobileNet, {"input_shape": (96, 96, 3)}),
    (keras_mobile.MobileNetV3Small, {"minimalistic": True, "alpha": 0.75}),
    (keras_mobile.MobileNetV3Large, {"alpha": 0.5}),
    (keras_mobile.EfficientNetB0, {"input_shape": (64, 64, 3)}),  # include_top: 224 only
    (keras_mobile.EfficientNetB3, {"input_shape": (224, 224, 3)}),
])
def test_imagenet_weights_only_where_keras_has_them(builder, kwargs):
    with pytest.raises(ValueError, match='weights="imagenet" is not available'):
        builder(weights="imagenet", **kwargs)
