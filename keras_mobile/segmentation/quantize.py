"""Quantization-aware training (tfmot) for segmenters.

:func:`quantize_segmenter` is :func:`keras_mobile.quantization.quantize_model` for a
:class:`~keras_mobile.segmentation.Segmenter`: the whole graph (backbone, decode head and
the auxiliary head, so that fine-tuning keeps its loss) is translated to tf_keras and
fake-quantized, and the result is a :class:`QuantizedSegmenter` with the same outputs
dict (``logits``, and ``aux_logits`` when the float model has the auxiliary head), the
same ``inference_model()`` (image -> logits, what is exported) and ``predict_masks``
(:class:`~keras_mobile.segmentation.segmenting.Segmenting`, shared with the float
model). Export it with ``export_segmenter(qat, path, labels=..., mode="int8")`` or
``keras_mobile.export.export(qat, path, mode="qat_int8", ...)``: the ranges it learned
are kept, and the int8 masks agree with its fake-quantized Keras masks.

What the segmentation heads add to the classifier's layers, and how they quantize
(``keras_mobile.quantization.configs``): bilinear ``UpSampling2D`` / ``Resizing`` are
not requantized (TFLite's int8 RESIZE_BILINEAR keeps its input's scale), ``Dropout``,
``Reshape`` and ``Permute`` move quantized values, the frozen depthwise convolutions of
PSPNet's pooling get per-channel kernels (exact: one value per channel), dilated
convolutions quantize as convolutions.

Example:
    >>> qat = keras_mobile.segmentation.quantize.quantize_segmenter(
    ...     seg, representative_data=images)
    >>> # ...fine-tune on {"logits": masks, "aux_logits": masks} (aux weight 0.4)
    >>> keras_mobile.segmentation.export_segmenter(qat, "seg_int8.tflite", labels=labels,
    ...                                            mode="int8", representative_data=images)
"""

from __future__ import annotations

import tf_keras

from keras_mobile.segmentation.models import Segmenter
from keras_mobile.segmentation.segmenting import Segmenting

OUTPUTS = ("logits", "aux_logits")


class QuantizedSegmenter(Segmenting, tf_keras.Model):
    """The quantization-aware (tfmot, tf_keras) twin of a
    :class:`~keras_mobile.segmentation.Segmenter`: image -> ``{"logits"}`` (+
    ``"aux_logits"``), with ``num_classes``, ``image_size``, ``inference_model()`` and
    ``predict_masks`` as the float model has them."""

    def __init__(self, inputs, outputs, *, name=None):
        super().__init__(inputs=inputs, outputs=outputs, name=name)


def quantize_segmenter(model, *, representative_data=None, num_calibration_samples: int = 100,
                       graph=None) -> QuantizedSegmenter:
    """The quantization-aware twin of the segmenter ``model`` (its weights copied exactly).

    Args:
        model: a :class:`~keras_mobile.segmentation.Segmenter` (``DeepLabV3``,
            ``PSPNet``, ``LRASPP``).
        representative_data, num_calibration_samples: images to calibrate the
            activation ranges on before fine-tuning (as
            :func:`keras_mobile.quantization.quantize_model`).
        graph: an already fake-quantized tf_keras graph of ``model`` (or of its
            ``inference_model()``) to wrap instead
            (``keras_mobile.quantization.post_training_graph``'s, for percentile int8).

    Returns:
        A :class:`QuantizedSegmenter`; fine-tune it, then export it with
        ``export_segmenter(..., mode="int8")``.
    """
    from keras_mobile.quantization.quantize import quantize_model, raw_pixel_input  # noqa: PLC0415

    if not isinstance(model, Segmenter):
        raise ValueError("model must be a keras_mobile.segmentation.Segmenter (what DeepLabV3, "
                         f"PSPNet and LRASPP return). Received: {type(model).__name__}.")
    if graph is None:
        graph = quantize_model(model, representative_data=representative_data,
                               num_calibration_samples=num_calibration_samples)
    if len(graph.outputs) == 1:  # an inference_model()'s graph
        outputs = {"logits": graph.outputs[0]}
    else:
        # tfmot names the outputs after their (wrapped) layers: "quant_logits", ...
        by_name = dict(zip(graph.output_names, graph.outputs, strict=True))
        outputs = {}
        for key in OUTPUTS:
            found = [n for n in by_name if n in (key, f"quant_{key}")]
            if found:
                outputs[key] = by_name[found[0]]
        if "logits" not in outputs:
            raise ValueError(f"graph has no 'logits' output. Received: outputs "
                             f"{list(by_name)}.")
    raw_pixel_input(graph)
    return QuantizedSegmenter(graph.inputs, outputs, name=f"quant_{model.name}")

