"""Export a Keras model to TFLite by export mode: the one vocabulary of modes
that ``keras_mobile.export.export``, the convert CLI, training's ``--export``,
the benchmark sweep and benchmark results (``BenchmarkResult.mode``) share.

=================== ============================================ ================
export mode         what is converted                            converter mode
=================== ============================================ ================
``float32``         the float model                              ``float32``
``float16``         the float model, float16 weights             ``float16``
``dynamic``         the float model, int8 weights                ``dynamic``
``int8``            the float model, post-training full integer, ``int8``
                    ranges from the converter's min/max
``int8_percentile`` its fake-quantized graph, ranges at the      ``int8``
                    0.01th/99.99th percentiles
                    (``quantization.post_training_graph``)
``qat_int8``        a quantization-aware (tfmot) model, with the ``int8``
                    ranges it learned (``quantize_model``, then
                    fine-tuned)
=================== ============================================ ================

The layers are one-way: this module decides with ``keras_mobile.quantization``
which graph is converted, and ``keras_mobile.tflite`` converts it (writes it
atomically, checks parity against the float model); tflite imports neither.

    report = keras_mobile.export.export(model, "m.tflite", mode="int8_percentile",
                                        representative_data=images)

A ``keras_mobile.detection`` detector exports the same way (``keras_mobile.tflite.convert``
hands it to ``keras_mobile.detection.export_detector``: NMS in the file, MediaPipe
metadata; pass ``metadata={"labels": [...]}``); ``qat_int8`` takes its
``quantize_detector`` twin. So does a ``keras_mobile.segmentation`` segmenter
(``keras_mobile.segmentation.export.export_segmenter``: its logits-only graph, MediaPipe
ImageSegmenter metadata, uint8 input in int8; ``qat_int8`` takes its ``quantize_segmenter``
twin, ``int8_percentile`` calibrates its ``inference_model()``).

Importing this module imports neither TensorFlow's converter nor tfmot.
"""

from __future__ import annotations

EXPORT_MODES = ("float32", "float16", "dynamic", "int8", "int8_percentile", "qat_int8")
# Export mode -> the TFLite converter's mode (keras_mobile.tflite.MODES).
CONVERSION_MODES = {"float32": "float32", "float16": "float16", "dynamic": "dynamic",
                    "int8": "int8", "int8_percentile": "int8", "qat_int8": "int8"}
# The modes of a float model (every one but qat_int8, which needs a quantization-aware one).
POST_TRAINING_MODES = tuple(m for m in EXPORT_MODES if m != "qat_int8")
# Modes that go through tfmot: models keras_mobile can translate to tf_keras only
# (keras_mobile's, not keras.applications').
TFMOT_MODES = ("int8_percentile", "qat_int8")


def check_mode(mode, modes=EXPORT_MODES, name: str = "mode") -> str:
    """``mode`` if it is one of ``modes``, else a ValueError naming them."""
    if mode not in modes:
        raise ValueError(f"{name} must be one of {', '.join(modes)}. Received: {name}={mode!r}")
    return mode


def conversion_mode(mode: str) -> str:
    """The TFLite converter's mode of an export mode (``int8_percentile`` -> ``int8``)."""
    return CONVERSION_MODES[check_mode(mode)]


def export(model, path: str, mode: str = "float32", *, representative_data=None,
           num_calibration_samples: int = 100, **convert_kwargs):
    """Convert ``model`` to a ``.tflite`` file in an export mode (module docstring).

    Args:
        model: a float Keras model (a quantization-aware tf_keras model for
            ``qat_int8``) with a static single image input.
        path: the ``.tflite`` file (replaced only after the parity check passes).
        mode: one of ``EXPORT_MODES``.
        representative_data: calibration images, required by the int8 modes
            (see ``keras_mobile.data.samples.as_images``).
        num_calibration_samples: how many of them to calibrate on.
        **convert_kwargs: ``keras_mobile.tflite.convert``'s other arguments
            (``inference_input_type``, ``check_data``, ``tolerance``,
            ``metadata``, ...). ``int8_percentile`` checks parity against
            ``model`` itself, not its fake-quantized graph.

    Returns:
        ``keras_mobile.tflite.convert``'s ``ConversionReport`` (its ``mode`` is
        the converter's: ``int8`` for the three int8 export modes).

    Raises:
        ValueError: a bad argument, or a model that does not fit the mode.
        keras_mobile.tflite.ConversionError: conversion or parity check failed.
    """
    from keras_mobile import tflite  # noqa: PLC0415
    from keras_mobile.bridge import is_quantization_aware  # noqa: PLC0415

    check_mode(mode)
    if mode == "int8_percentile" and "reference" in convert_kwargs:
        raise TypeError("mode='int8_percentile' checks parity against model itself: "
                        "export() takes no reference= for it.")
    qat = is_quantization_aware(model)
    if mode == "qat_int8" and not qat:
        raise ValueError(
            "mode='qat_int8' converts a quantization-aware model "
            "(keras_mobile.quantization.quantize_model(model), fine-tuned); a float model "
            "exports to int8 with mode='int8' or 'int8_percentile'. Received: a model "
            f"without fake quantization {getattr(model, 'name', type(model).__name__)!r}")
    if qat and mode != "qat_int8":
        raise ValueError(f"A quantization-aware model converts with the ranges it learned: "
                         f"mode='qat_int8'. Received: mode={mode!r} for the quantization-aware "
                         f"model {model.name!r}")
    kwargs = dict(mode=CONVERSION_MODES[mode], representative_data=representative_data,
                  num_calibration_samples=num_calibration_samples, **convert_kwargs)
    if _is_segmenter(model):  # registers its converter with keras_mobile.tflite.convert
        import keras_mobile.segmentation.export  # noqa: F401, PLC0415
    if mode != "int8_percentile":
        return tflite.convert(model, path, **kwargs)

    from keras_mobile import quantization  # noqa: PLC0415
    from keras_mobile.bridge import check_functional  # noqa: PLC0415
    from keras_mobile.data.samples import as_images  # noqa: PLC0415
    from keras_mobile.tflite.convert import check_arguments  # noqa: PLC0415

    if representative_data is None:
        raise ValueError("mode='int8_percentile' needs representative_data (about 100 typical "
                         "input images) to calibrate activation ranges. "
                         "Received: representative_data=None.")
    # Before the work below (a detector's tolerance is a DetectionTolerance, a segmenter's
    # a SegmentationTolerance, checked later; a segmenter's uint8 input is its own).
    dense = _is_detector(model) or _is_segmenter(model)
    check_arguments(model, path, **({**kwargs, "tolerance": None, "inference_input_type": None}
                                    if dense else kwargs))
    check_functional(model)
    # Read once (a generator yields its images once): calibration and converter share them.
    images = as_images(representative_data, num_calibration_samples,
                       tuple(model.inputs[0].shape[1:]))
    # A segmenter's exported graph is its inference model (no auxiliary head to calibrate).
    source = model.inference_model() if _is_segmenter(model) else model
    graph = quantization.post_training_graph(source, images, calibration_method="percentile",
                                             num_calibration_samples=len(images))
    if _is_detector(model):  # the fake-quantized graph keeps the detector's anchors and NMS
        from keras_mobile.detection.quantize import quantize_detector  # noqa: PLC0415

        graph = quantize_detector(model, graph=graph)
    elif _is_segmenter(model):  # ... and a segmenter's outputs dict, labels' count
        from keras_mobile.segmentation.quantize import quantize_segmenter  # noqa: PLC0415

        graph = quantize_segmenter(model, graph=graph)
    kwargs.update(representative_data=images, num_calibration_samples=len(images))
    return tflite.convert(graph, path, reference=model, **kwargs)


def _is_detector(model) -> bool:
    from keras_mobile.detection.postprocess import Decoding  # noqa: PLC0415

    return isinstance(model, Decoding)


def _is_segmenter(model) -> bool:
    from keras_mobile.segmentation.segmenting import Segmenting  # noqa: PLC0415

    return isinstance(model, Segmenting)
