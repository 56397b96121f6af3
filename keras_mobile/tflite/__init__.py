"""TFLite deployment: conversion with a LiteRT parity check, static inspection
(ops, ranks, GPU-delegate readiness), and metadata Android apps can read.

    report = keras_mobile.tflite.convert(model, "emo1m.tflite", mode="float32")
    print(report)                                   # size, ops, ranks, XNNPACK, parity
    keras_mobile.tflite.add_metadata("emo1m.tflite", labels=[...])
    print(keras_mobile.tflite.inspect("emo1m.tflite"))

This package converts the graph it is given and never imports
``keras_mobile.quantization``; ``keras_mobile.export`` picks the graph for an
export mode (``int8_percentile``, ``qat_int8``, ...) and calls ``convert``.
"""

from keras_mobile.bridge import is_quantization_aware
from keras_mobile.tflite.convert import (
    MODES,
    TOLERANCES,
    ConversionError,
    ConversionReport,
    Parity,
    Tolerance,
    convert,
    measure_parity,
)
from keras_mobile.tflite.inspect import Inspection, inspect
from keras_mobile.tflite.metadata import add_metadata, read_metadata

# Sample helpers that live in keras_mobile.data.samples, re-exported here for
# compatibility; loaded on first access, so that importing keras_mobile.tflite
# does not import keras_mobile.data (tensorflow-datasets).
_SAMPLES = ("recalibrate_batchnorm", "synthetic_images")


def __getattr__(name):
    if name in _SAMPLES:
        from keras_mobile.data import samples  # noqa: PLC0415

        value = getattr(samples, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MODES", "TOLERANCES", "ConversionError", "ConversionReport", "Inspection", "Parity",
           "Tolerance", "add_metadata", "convert", "inspect", "is_quantization_aware",
           "measure_parity", "read_metadata", "recalibrate_batchnorm", "synthetic_images"]
