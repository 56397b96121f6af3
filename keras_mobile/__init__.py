"""keras_mobile: efficient mobile vision models for Keras 3, from paper to phone.

The builders, ``profile`` and the registry load with the package; the other
subpackages (``keras_mobile.tflite``, ``quantization``, ``benchmark``,
``training``, ``data``, ...) load on first attribute access (PEP 562), so
``import keras_mobile`` imports neither tfmot, tf_keras nor tfds.
"""

import importlib

from keras_mobile import _startup

__version__ = "0.1.0"
_startup.import_tensorflow()  # TensorFlow's INFO lines off unless TF_CPP_MIN_LOG_LEVEL=0

from keras_mobile import models, weights  # models registers every builder
from keras_mobile.features import feature_levels, feature_pyramid
from keras_mobile.models._common import decode_predictions, preprocess_input
from keras_mobile.models.efficientnet import (
    EfficientNetB0,
    EfficientNetB1,
    EfficientNetB2,
    EfficientNetB3,
    EfficientNetB4,
    EfficientNetB5,
    EfficientNetB6,
    EfficientNetB7,
)
from keras_mobile.models.emo import EMO1M, EMO2M, EMO5M, EMO6M, EMO10M, EMO20M
from keras_mobile.models.mobilenet import MobileNet
from keras_mobile.models.mobilenet_v2 import MobileNetV2
from keras_mobile.models.mobilenet_v3 import MobileNetV3Large, MobileNetV3Small
from keras_mobile.models.mobilenext import EfficientNetB0Sandglass, MobileNeXt
from keras_mobile.profiling import profile
from keras_mobile.registry import get_model, list_models, normalize

# Subpackages and modules loaded on first access as ``keras_mobile.<name>``.
_LAZY = ("benchmark", "data", "detection", "export", "quantization", "search", "segmentation",
         "tflite", "training")


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module  # later lookups skip __getattr__
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY})


__all__ = [
    "EMO1M", "EMO2M", "EMO5M", "EMO6M", "EMO10M", "EMO20M",
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4",
    "EfficientNetB5", "EfficientNetB6", "EfficientNetB7", "EfficientNetB0Sandglass",
    "MobileNet", "MobileNetV2", "MobileNetV3Large", "MobileNetV3Small", "MobileNeXt",
    "decode_predictions", "feature_levels", "feature_pyramid", "get_model", "list_models",
    "models", "normalize", "preprocess_input", "profile", "weights",
]  # the lazy subpackages stay out: `import *` loads no tfmot or tfds
