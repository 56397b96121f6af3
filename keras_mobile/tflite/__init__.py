"""TFLite deployment: conversion with a LiteRT parity check, static inspection
(ops, ranks, GPU-delegate readiness), and metadata Android apps can read.

    report = keras_mobile.tflite.convert(model, "emo1m.tflite", mode="float32")
    print(report)                                   # size, ops, ranks, XNNPACK, parity
    keras_mobile.tflite.add_metadata("emo1m.tflite", labels=[...])
    print(keras_mobile.tflite.inspect("emo1m.tflite"))
"""

from keras_mobile.tflite.convert import (
    MODES,
    TOLERANCES,
    ConversionError,
    ConversionReport,
    Parity,
    Tolerance,
    convert,
    is_quantization_aware,
    measure_parity,
)
from keras_mobile.tflite.inspect import Inspection, inspect
from keras_mobile.tflite.metadata import add_metadata, read_metadata
from keras_mobile.tflite.samples import recalibrate_batchnorm, synthetic_images

__all__ = ["MODES", "TOLERANCES", "ConversionError", "ConversionReport", "Inspection", "Parity",
           "Tolerance", "add_metadata", "convert", "inspect", "is_quantization_aware",
           "measure_parity", "read_metadata", "recalibrate_batchnorm", "synthetic_images"]
