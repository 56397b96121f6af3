"""Quantization-aware training (tfmot) for keras_mobile's Keras 3 models.

    qat = keras_mobile.quantization.quantize_model(model, representative_data=ds)  # tf_keras

    qat.compile(...); qat.fit(train_ds, epochs=2)
    keras_mobile.tflite.convert(qat, "m_int8.tflite", mode="int8", representative_data=ds)

tfmot works only on tf_keras models, so :func:`to_tf_keras` translates the
Keras 3 graph layer by layer (same code, same weights). Importing this package
imports neither tfmot nor tf_keras; :func:`quantize_model` does.
"""

from keras_mobile.quantization.bridge import copy_weights, to_tf_keras
from keras_mobile.quantization.calibration import calibrate
from keras_mobile.quantization.quantize import quantize_model, quantize_scope

__all__ = ["calibrate", "copy_weights", "quantize_model", "quantize_scope", "to_tf_keras"]
