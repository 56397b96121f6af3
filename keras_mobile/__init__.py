"""keras_mobile: efficient mobile vision models for Keras 3, from paper to phone."""

__version__ = "0.1.0"

from keras_mobile import models  # noqa: F401  (registers every builder)
from keras_mobile.models.emo import EMO1M, EMO2M, EMO5M, EMO6M
from keras_mobile.models.mobilenet_v2 import MobileNetV2
from keras_mobile.models.mobilenext import EfficientNetB0Sandglass, MobileNeXt
from keras_mobile.registry import get_model, list_models
