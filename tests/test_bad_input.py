"""Bad arguments fail with a clear message naming the argument, before any layer is built."""

import pytest

import keras_mobile
from keras_mobile.models import _common

CASES = [
    (dict(weights="imagnet"), ValueError, "weights must be None, \"imagenet\" or a path. "
                                          "Received: weights='imagnet'"),
    (dict(weights="/no/such/file.h5"), FileNotFoundError, "weights='/no/such/file.h5'"),
    (dict(weights=3), TypeError, "Received: weights=3"),
    (dict(weights="imagenet", classes=10), ValueError, "classes must be 1000"),
    (dict(pooling="mean", include_top=False), ValueError, "pooling must be None, \"avg\""),
    (dict(input_shape=(224, 224, 1)), ValueError, "3 RGB channels"),
    (dict(input_shape=(16, 16, 3)), ValueError, "at least (32, 32, 3)"),
    (dict(input_shape=(None, None, 3)), ValueError, "fully static"),
    (dict(classes=0), ValueError, "classes must be a positive integer"),
    (dict(include_top="yes"), TypeError, "include_top must be True or False"),
    (dict(weights="imagenet", classifier_activation="relu"), ValueError,
     "classifier_activation must be None or \"softmax\""),
]


@pytest.mark.parametrize("kwargs, error, message", CASES)
@pytest.mark.parametrize("name", ["EMO1M", "MobileNetV2"])
def test_keras_applications_arguments(name, kwargs, error, message, monkeypatch):
    def no_building(*args, **kw):
        raise AssertionError("a model was being built before the arguments were checked")

    monkeypatch.setattr(_common, "model_input", no_building)
    with pytest.raises(error) as info:
        keras_mobile.get_model(name, **{"weights": None, **kwargs})
    assert message in str(info.value)


def test_unknown_model_lists_available():
    with pytest.raises(ValueError, match="Did you mean EMO1M") as info:
        keras_mobile.get_model("EMO1m")
    assert "Available: " in str(info.value) and "MobileNetV2" in str(info.value)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(window_size=7.5), TypeError, "window_size must be an integer"),
    (dict(window_size="7"), TypeError, "window_size must be an integer"),
    (dict(attn_pre=False), ValueError, "does not divide it. Received: attn_pre=False"),
    (dict(drop_path_rate=1.5), ValueError, "drop_path_rate must be in [0, 1)"),
])
def test_emo_knobs(kwargs, error, message):
    with pytest.raises(error) as info:
        keras_mobile.EMO1M(weights=None, **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("alpha", [0, -1.0])
def test_non_positive_width(alpha):
    with pytest.raises(ValueError, match=r"alpha must be positive. Received: alpha="):
        keras_mobile.MobileNetV2(weights=None, alpha=alpha)


def test_imagenet_unavailable_for_variant():
    with pytest.raises(ValueError, match="not available for this model"):
        keras_mobile.MobileNetV2(weights="imagenet", alpha=0.6)


def test_normalize_equals_the_in_model_preprocessing():
    import numpy as np

    x = np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    for name in ("EMO1M", "MobileNetV2"):
        raw = keras_mobile.get_model(name, weights=None, input_shape=(64, 64, 3))
        pre = keras_mobile.get_model(name, weights=None, input_shape=(64, 64, 3),
                                     include_preprocessing=False)
        pre.set_weights(raw.get_weights())
        expected = raw(x, training=False).numpy()
        got = pre(keras_mobile.normalize(x, name), training=False).numpy()
        assert np.abs(expected - got).max() < 1e-5
    assert keras_mobile.preprocess_input(x) is x
