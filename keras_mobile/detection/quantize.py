"""Quantization-aware training (tfmot) for detectors.

:func:`quantize_detector` is :func:`keras_mobile.quantization.quantize_model` for a
:class:`~keras_mobile.detection.Detector`: the detector's graph (backbone, neck, heads:
convolutions only, ``specs/dense.md`` §4) is translated to tf_keras and fake-quantized,
and the result is a :class:`QuantizedDetector`, which keeps what the float detector
knows about its outputs (anchors, activation, box coding, NMS settings). So it trains
through the same engine task, decodes with ``predict_boxes`` and exports with
``keras_mobile.detection.export_detector(qat, path, labels=..., mode="int8")`` (the
ranges it learned are kept; the int8 body has no float op).

The model outputs logits, as the float detector does (the exported file applies
the softmax or sigmoid), so there is no classifier head to drop.

Example:
    >>> qat = keras_mobile.detection.quantize_detector(det, representative_data=images)
    >>> # ...fine-tune: keras_mobile.detection.training.train(config(qat=True), det, weights)
    >>> keras_mobile.detection.export_detector(qat, "det_int8.tflite", labels=labels,
    ...                                        mode="int8", representative_data=images)
"""

from __future__ import annotations

import numpy as np
import tf_keras

from keras_mobile.detection import postprocess

OUTPUTS = ("box_encodings", "class_logits")


class QuantizedDetector(postprocess.Decoding, tf_keras.Model):
    """The quantization-aware (tfmot, tf_keras) twin of a
    :class:`~keras_mobile.detection.Detector`: image -> ``{"box_encodings",
    "class_logits"}``, with the float detector's anchors and decoding settings."""

    def __init__(self, inputs, outputs, *, anchors, num_classes: int, name=None,
                 **decoding):
        settings = self._set_decoding(**decoding)
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        for key, value in settings.items():
            setattr(self, key, value)
        # Plain attributes (not tracked: they are not weights).
        self._anchors = np.asarray(anchors, np.float32)
        self._num_classes = int(num_classes)

    @property
    def anchors(self) -> np.ndarray:
        """``[N, 4]`` (ymin, xmin, ymax, xmax) anchors in input pixels, in output order."""
        return self._anchors

    @property
    def num_classes(self) -> int:
        """Foreground classes (the background column of a softmax head excluded)."""
        return self._num_classes


def quantize_detector(model, *, representative_data=None, num_calibration_samples: int = 100,
                      graph=None) -> QuantizedDetector:
    """The quantization-aware twin of the detector ``model`` (its weights copied exactly).

    Args:
        model: a :class:`~keras_mobile.detection.Detector` (``SSDLite``, ``RetinaNet``).
        representative_data, num_calibration_samples: images to calibrate the
            activation ranges on before fine-tuning (as
            :func:`keras_mobile.quantization.quantize_model`).
        graph: an already fake-quantized tf_keras graph of ``model`` to wrap instead
            (``keras_mobile.quantization.post_training_graph``'s, for percentile int8).

    Returns:
        A :class:`QuantizedDetector`; fine-tune it, then export it with
        ``export_detector(..., mode="int8")``.
    """
    from keras_mobile.quantization.quantize import quantize_model, raw_pixel_input  # noqa: PLC0415

    if not isinstance(model, postprocess.Detector):
        raise ValueError("model must be a keras_mobile.detection.Detector (what SSDLite and "
                         f"RetinaNet return). Received: {type(model).__name__}.")
    if graph is None:
        graph = quantize_model(model, representative_data=representative_data,
                               num_calibration_samples=num_calibration_samples)
    # tfmot names the outputs after their layers ("quant_box_encodings", ...).
    by_name = dict(zip(graph.output_names, graph.outputs, strict=True))
    outputs = {}
    for key in OUTPUTS:
        (name,) = [n for n in by_name if n == key or n.endswith(f"_{key}")]
        outputs[key] = by_name[name]
    raw_pixel_input(graph)  # a uint8 input of scale 1: MediaPipe's raw pixels
    return QuantizedDetector(graph.inputs, outputs, anchors=model.anchors,
                             num_classes=model.num_classes, name=f"quant_{model.name}",
                             **model.decoding())
