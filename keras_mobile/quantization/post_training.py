"""Post-training int8: which graph the TFLite converter quantizes.

``calibration_method`` means one thing wherever it appears: how post-training
int8 sets the activation ranges of a float model from representative images.

* ``"minmax"``: the TFLite converter's own calibration (each tensor's min/max
  on the images). The converter gets the float model;
  ``keras_mobile.tflite.convert(mode="int8")`` hands it, for a Keras 3 model
  with hard-swish or GELU, its tf_keras twin with QAT's rewrites
  (``keras_mobile.bridge.to_tf_keras(for_quantization=True)``).
* ``"percentile"``: the model's fake-quantized tf_keras graph
  (:func:`~keras_mobile.quantization.quantize_model`) with every range from
  the 0.01th to the 99.99th percentile of its values
  (:func:`~keras_mobile.quantization.calibrate`): a few outliers no longer
  spread the int8 steps, and EMO's attention gets the ranges XNNPACK runs.
  The converter keeps those ranges.

Convert the graph with ``keras_mobile.tflite.convert(graph, path, mode="int8",
representative_data=images, reference=model)``, or let
``keras_mobile.export.export(model, path, mode="int8_percentile", ...)`` do both.
"""

from __future__ import annotations

CALIBRATION_METHODS = ("minmax", "percentile")
PERCENTILE = 99.99  # "percentile": ranges from the 0.01th to the 99.99th percentile


def post_training_graph(model, representative_data, *, calibration_method: str = "minmax",
                        num_calibration_samples: int = 100):
    """The graph to convert to post-training int8 (see the module docstring).

    Args:
        model: a float Keras model (for ``"percentile"``: a Keras 3 functional
            model keras_mobile can quantize, e.g. any keras_mobile model).
        representative_data: calibration images (an array, a ``tf.data``
            dataset, an iterable; ``keras_mobile.data.samples.as_images``).
            Pass the converter the same images.
        calibration_method: ``"minmax"`` or ``"percentile"``.
        num_calibration_samples: how many images of ``representative_data`` to
            calibrate on.

    Returns:
        ``model`` itself (``"minmax"``), or its calibrated fake-quantized
        tf_keras graph (``"percentile"``).

    Raises:
        ValueError: an unknown ``calibration_method``, a quantization-aware
            ``model`` (it converts with the ranges it learned), no images, or
            (``"percentile"``) a model keras_mobile cannot quantize.

    Example:
        >>> graph = keras_mobile.quantization.post_training_graph(
        ...     model, images, calibration_method="percentile")
        >>> keras_mobile.tflite.convert(graph, "m.tflite", mode="int8",
        ...                             representative_data=images, reference=model)
    """
    from keras_mobile.bridge import check_functional, is_quantization_aware  # noqa: PLC0415
    from keras_mobile.quantization import calibration  # noqa: PLC0415
    from keras_mobile.quantization.quantize import quantize_model  # noqa: PLC0415

    if calibration_method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration_method must be one of "
                         f"{', '.join(map(repr, CALIBRATION_METHODS))}. "
                         f"Received: calibration_method={calibration_method!r}")
    if is_quantization_aware(model):
        raise ValueError(f"calibration_method={calibration_method!r} calibrates a float Keras "
                         f"model; a quantization-aware model converts with the ranges it "
                         f"learned. Received: a quantization-aware model {model.name!r}")
    if representative_data is None:
        raise ValueError("Post-training int8 needs representative_data (about 100 typical "
                         "input images) to calibrate activation ranges. "
                         "Received: representative_data=None.")
    if calibration_method == "minmax":
        return model
    check_functional(model)
    images = calibration.calibration_images(representative_data, num_calibration_samples,
                                            model.input_shape[1:])
    fake_quantized = quantize_model(model)  # raises a ValueError naming an unquantizable layer
    calibration.calibrate(fake_quantized, images, len(images), limit=None,
                          percentile=PERCENTILE)
    return fake_quantized
