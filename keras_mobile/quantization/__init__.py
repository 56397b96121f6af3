"""Quantization-aware training (tfmot) and post-training int8 for keras_mobile's
Keras 3 models: this package decides which graph is converted; ``keras_mobile.tflite``
converts it, and ``keras_mobile.export`` composes both.

    qat = keras_mobile.quantization.quantize_model(model, representative_data=ds)  # tf_keras

    qat.compile(...); qat.fit(train_ds, epochs=2)
    keras_mobile.export.export(qat, "m_int8.tflite", mode="qat_int8", representative_data=ds)

tfmot works only on tf_keras models, so ``keras_mobile.bridge.to_tf_keras``
translates the Keras 3 graph layer by layer (same code, same weights). Every
adaptation of tfmot lives in :mod:`keras_mobile.quantization.tfmot_adapter`.
Importing this package imports neither tfmot nor tf_keras; :func:`quantize_model` does.
"""

from keras_mobile.bridge import copy_weights, to_tf_keras  # re-exported (compatibility)
from keras_mobile.quantization.calibration import calibrate
from keras_mobile.quantization.post_training import (
    CALIBRATION_METHODS,
    PERCENTILE,
    post_training_graph,
)
from keras_mobile.quantization.quantize import quantize_model, quantize_scope

__all__ = ["CALIBRATION_METHODS", "PERCENTILE", "calibrate", "copy_weights",
           "post_training_graph", "quantize_model", "quantize_scope", "to_tf_keras"]
