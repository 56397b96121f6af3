"""A keras_mobile segmenter to a ``.tflite`` file that MediaPipe's ``ImageSegmenter`` runs.

What is converted is ``model.inference_model()`` (the auxiliary head left out): ONE
output ``[1, H, W, C]``, the logits at the input size, no softmax in the graph (the
metadata's ``SEGMENTER_METADATA`` declares ``SOFTMAX``, so MediaPipe's confidence masks
are probabilities; its category mask is the argmax, which the softmax does not change).
Batch 1, a static shape, every tensor of rank <= 4 (``specs/dense.md`` §3).

Modes: ``float32``, ``float16`` (float16 weights), ``dynamic`` (int8 weights) and
``int8``: a full-integer body with a **uint8 input** (MediaPipe refuses int8 inputs;
the input is calibrated to scale 1, zero point 0, so raw pixels go in) and a **float32
output** behind a final DEQUANTIZE: MediaPipe's ``TensorsToSegmentationCalculator`` reads
the output tensor's buffer as float whatever its type (``buffer<float>()``), so a uint8
output would be read as garbage. On a conv backbone the DEQUANTIZE is the only float op
(``keras_mobile.tflite.inspect(path).float_ops`` is empty: a boundary DEQUANTIZE is not
counted); an EMO backbone's attention softmax and LayerNorm RSQRT compute in float inside
the XNNPACK partition (``denylisted_ops``, as ``keras_mobile.tflite.convert``). A Keras 3
model with hard-swish converts to int8 as its tf_keras twin
(``keras_mobile.tflite.convert``'s rule), whose int8 ops XNNPACK runs; a quantization-aware
twin (:func:`keras_mobile.segmentation.quantize.quantize_segmenter`) converts with the
ranges it learned.

Parity (:class:`SegmentationTolerance`): the argmax masks of Keras and LiteRT on the check
images, pixel by pixel (and the logits' max abs error); the file is written atomically,
only after the gate passes, then keras_mobile's writer
(:func:`keras_mobile.tflite.metadata.add_segmenter_metadata`) adds what MediaPipe reads.

Example:
    >>> seg = keras_mobile.segmentation.LRASPP("MobileNetV3Small", num_classes=3,
    ...                                        input_shape=(256, 256, 3))
    >>> report = keras_mobile.segmentation.export_segmenter(
    ...     seg, "seg.tflite", labels=["background", "cat", "dog"], mode="int8",
    ...     representative_data=images)
    >>> print(report)  # size, ops, XNNPACK partitions, pixel agreement
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from typing import NamedTuple

import numpy as np

from keras_mobile.segmentation.models import Segmenter
from keras_mobile.segmentation.segmenting import Segmenting
from keras_mobile.tflite.convert import MODES, register_converter

# add_segmenter_metadata arguments that metadata= may hold.
METADATA_KEYS = ("name", "version", "description", "author", "license")


class SegmentationTolerance(NamedTuple):
    """The segmentation parity gate: at least ``min_pixel_agreement`` of the check pixels
    get the same class (argmax) in Keras and LiteRT; ``max_logit_error`` (None: not
    gated) bounds max |Keras - LiteRT| over the logits, relative to the Keras logits'
    range."""

    min_pixel_agreement: float = 0.999
    max_logit_error: float | None = None


# Per converter mode (keras_mobile.tflite.MODES: float32, float16, dynamic, int8), measured
# on MobileNetV3Small LR-ASPP, DeepLabV3 and PSPNet trained on synthetic colour scenes
# (128 px, 89-99% pixel accuracy; 16 check images): float32 100% pixel agreement (a tie
# can flip a pixel: 99.9992% seen on a random PSPNet); float16 >= 99.99%; dynamic >=
# 99.94%; int8 98.97-99.89% (worst single image 96.6%), QAT int8 against its twin 99.90%.
# int8 flips pixels along class boundaries, where bilinearly upsampled logits cross. A
# mis-calibrated int8 file (calibrated on flat grey images: 82.5%, on noise: 96.6%, a
# 1-point accuracy loss) fails the 0.97 gate; a model that is not trained can fail it too
# (a random LR-ASPP: 94%): pass tolerance= for those.
TOLERANCES = dict(zip(MODES, (
    SegmentationTolerance(0.999, 1e-4),
    SegmentationTolerance(0.999),
    SegmentationTolerance(0.99),
    SegmentationTolerance(0.97),
), strict=True))


@dataclasses.dataclass(frozen=True)
class SegmentationParity:
    """Keras against LiteRT on ``samples`` images: argmax masks and logits."""

    samples: int
    pixels: int
    pixel_agreement: float  # share of pixels with the same argmax class
    worst_image_agreement: float
    mean_iou: float  # mean over the classes of the Keras masks, IoU with LiteRT's mask
    max_abs_logit_error: float
    max_rel_logit_error: float  # over the Keras logits' range
    keras_classes: int  # classes present in the Keras masks

    def __str__(self):
        return (f"{self.samples} images ({self.pixels} pixels): pixel agreement "
                f"{self.pixel_agreement:.4%} (worst image {self.worst_image_agreement:.4%}), "
                f"mIoU {self.mean_iou:.4f} over {self.keras_classes} classes, max |logit "
                f"diff| {self.max_abs_logit_error:.3g} ({self.max_rel_logit_error:.3g} of the "
                f"range)")


def export_segmenter(model, path, *, labels, mode: str = "float32", representative_data=None,
                     num_calibration_samples: int = 100, activation: str = "SOFTMAX",
                     check: bool = True, check_data=None, num_check_samples: int = 8,
                     tolerance: SegmentationTolerance | None = None,
                     metadata: dict | None = None, reference=None,
                     denylisted_ops="xnnpack"):
    """Convert a keras_mobile segmenter to a ``.tflite`` file with MediaPipe metadata.

    Args:
        model: a :class:`keras_mobile.segmentation.Segmenter` (what ``DeepLabV3``,
            ``PSPNet`` and ``LRASPP`` return) with a static input shape, or its
            quantization-aware twin (:func:`~keras_mobile.segmentation.quantize.
            quantize_segmenter`, ``mode="int8"``: the ranges it learned are kept).
        path: the ``.tflite`` file (replaced only after the parity check passes).
        labels: the names of its classes, in channel order.
        mode: ``"float32"``, ``"float16"``, ``"dynamic"`` or ``"int8"`` (uint8 input,
            float32 output).
        representative_data: calibration images for ``int8`` (see
            ``keras_mobile.data.samples.as_images``), raw [0, 255] pixels.
        num_calibration_samples: how many of them to use.
        activation: what the metadata tells MediaPipe to apply for confidence masks:
            ``"SOFTMAX"`` (default: the model outputs logits), ``"SIGMOID"``, ``"NONE"``.
        check: compare argmax masks with Keras (see :class:`SegmentationTolerance`)
            before writing; on failure :class:`keras_mobile.tflite.ConversionError`.
        check_data: images for the check (default: the calibration images, else
            synthetic ones).
        num_check_samples: how many images to check.
        tolerance: the gate (default ``TOLERANCES[mode]``).
        metadata: extra :func:`keras_mobile.tflite.metadata.add_segmenter_metadata`
            arguments (``name``, ``version``, ``description``, ``author``, ``license``).
        reference: the segmenter the parity check compares with (default: ``model``),
            e.g. the float segmenter of a quantization-aware ``model``.
        denylisted_ops: int8 ops computed in float32 (``keras_mobile.tflite.convert``'s;
            default: those XNNPACK does not run in int8).

    Returns:
        A ``keras_mobile.tflite.ConversionReport`` whose ``parity`` is a
        :class:`SegmentationParity` (None without ``check``).
    """
    from keras_mobile.data.samples import as_images, check_count
    from keras_mobile.files import atomic_path
    from keras_mobile.tflite import runtime
    from keras_mobile.tflite.convert import (  # the classifier path's pieces, reused
        _convert,
        _int8_graph,
        _report,
        check_arguments,
        check_images,
        with_full_pixel_range,
    )
    from keras_mobile.tflite.metadata import check_labels, check_segmenter_activation

    _check_model(model, mode, "model")
    if reference is not None:
        _check_model(reference, "float32", "reference")
        if (reference.image_size, reference.num_classes) != (model.image_size,
                                                             model.num_classes):
            raise ValueError("reference must be a segmenter of the model's input size and "
                             f"classes {model.image_size}, {model.num_classes}. Received: "
                             f"{reference.image_size}, {reference.num_classes}.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}. "
                         f"Received: mode={mode!r}.")
    input_type = "uint8" if mode == "int8" else "float32"
    inference = model.inference_model()
    check_arguments(inference, path, mode=mode, representative_data=representative_data,
                    num_calibration_samples=num_calibration_samples,
                    inference_input_type=input_type, num_check_samples=num_check_samples,
                    denylisted_ops=denylisted_ops)
    labels = check_labels(labels)
    if labels is None or len(labels) != model.num_classes:
        raise ValueError(f"labels must name the model's {model.num_classes} classes, in channel "
                         f"order. Received: {_count(labels)} labels={_short(labels)}.")
    activation = check_segmenter_activation(activation)
    if activation == "SOFTMAX" and model.num_classes < 2:
        raise ValueError("activation='SOFTMAX' needs 2 or more classes (MediaPipe refuses it "
                         "on one channel): pass activation='SIGMOID'. Received: a model with "
                         "1 class.")
    if tolerance is not None and not isinstance(tolerance, SegmentationTolerance):
        raise ValueError("tolerance must be a keras_mobile.segmentation.SegmentationTolerance. "
                         f"Received: tolerance={tolerance!r}.")
    if metadata is not None and (not isinstance(metadata, dict)
                                 or set(metadata) - set(METADATA_KEYS)):
        raise ValueError("metadata must be a dict of name, version, description, author, "
                         f"license. Received: metadata={metadata!r}.")
    check_count("num_check_samples", num_check_samples)

    start = time.time()
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    images = None
    if representative_data is not None:
        images = as_images(representative_data, num_calibration_samples, shape)
    calibration = with_full_pixel_range(images) if mode == "int8" else images
    quantization_aware = not isinstance(model, Segmenter)
    source = _int8_graph(inference) if mode == "int8" and not quantization_aware else inference
    flatbuffer = _convert(source, shape, mode, calibration, input_type, "float32", False,
                          denylisted_ops=denylisted_ops)
    gate = tolerance or TOLERANCES[mode]

    it = runtime.interpreter(flatbuffer)
    _check_graph(flatbuffer, mode, path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
        parity = None
        if check:
            checked = check_images(check_data, num_check_samples, shape, images)
            parity = measure_segmentation_parity(reference or model, it, checked)
            _gate(parity, gate, mode, path, flatbuffer)
            if parity.keras_classes < 2:
                warnings.warn(
                    f"The Keras model predicts one class on every pixel of the "
                    f"{parity.samples} check images, so the mask parity proves little. Pass "
                    "check_data where the model sees several classes.", stacklevel=2)
        from keras_mobile.tflite.metadata import add_segmenter_metadata

        add_segmenter_metadata(
            tmp, labels=labels, activation=activation,
            **{"name": os.path.splitext(os.path.basename(os.fspath(path)))[0],
               **(metadata or {})})
        report = _report(tmp, it, path, mode, input_type, "float32", parity,
                         time.time() - start)
    return report


def convert_segmenter(model, path, *, mode="float32", representative_data=None,
                      num_calibration_samples=100, inference_input_type=None,
                      inference_output_type=None, check=True, check_data=None,
                      num_check_samples=8, tolerance=None, metadata=None,
                      allow_select_tf_ops=False, reference=None,
                      denylisted_ops="xnnpack"):
    """``keras_mobile.tflite.convert`` for a segmenter: :func:`export_segmenter`,
    ``metadata`` holding ``labels`` (required), optionally ``activation`` and the
    writer's other fields."""
    expected = "uint8" if mode == "int8" else "float32"
    for name, value, want in (("inference_input_type", inference_input_type, expected),
                              ("inference_output_type", inference_output_type, "float32")):
        if value not in (None, want):
            raise ValueError(f"A {mode} segmenter takes {want} for {name} (MediaPipe's "
                             "ImageSegmenter: an int8 body is fed uint8 pixels and its output "
                             f"is read as float). Received: {name}={value!r}.")
    if allow_select_tf_ops:
        raise ValueError("allow_select_tf_ops does not apply to a segmenter: it converts to "
                         "builtin ops only.")
    from keras_mobile.tflite.convert import Tolerance

    if isinstance(tolerance, Tolerance):
        raise ValueError("A segmenter's parity gate compares masks: pass a "
                         "keras_mobile.segmentation.SegmentationTolerance. "
                         f"Received: tolerance={tolerance!r}.")
    metadata = dict(metadata or {})
    if "labels" not in metadata:
        raise ValueError("A segmenter needs metadata={'labels': [...]}, the names of its "
                         f"{getattr(model, 'num_classes', '?')} classes (MediaPipe reports "
                         f"them). Received: metadata={metadata or None!r}.")
    labels = metadata.pop("labels")
    activation = metadata.pop("activation", "SOFTMAX")
    return export_segmenter(model, path, labels=labels, mode=mode,
                            representative_data=representative_data,
                            num_calibration_samples=num_calibration_samples,
                            activation=activation, check=check, check_data=check_data,
                            num_check_samples=num_check_samples, tolerance=tolerance,
                            metadata=metadata or None, reference=reference,
                            denylisted_ops=denylisted_ops)


def tflite_logits(tflite_model, images) -> np.ndarray:
    """``[B, h, w, C]`` float logits of a converted segmenter (a path, bytes or an
    interpreter) on float [0, 255] ``images`` (a uint8 input gets them quantized)."""
    from keras_mobile.tflite import runtime

    it = (tflite_model if hasattr(tflite_model, "invoke")
          else runtime.interpreter(tflite_model))
    return runtime.predict(it, np.asarray(images, np.float32))[0]


def measure_segmentation_parity(model, tflite_model, images) -> SegmentationParity:
    """Compare the argmax masks (and logits) of ``model`` (a segmenter, its
    quantization-aware twin, or any Keras model whose output or ``"logits"`` is
    ``[B, H, W, C]``) and its ``.tflite`` (a path, bytes or an interpreter) on ``images``."""
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[None]
    graph = model.inference_model() if isinstance(model, Segmenting) else model
    outputs = [graph(images[i:i + 8], training=False) for i in range(0, len(images), 8)]
    outputs = [o["logits"] if isinstance(o, dict) else o for o in outputs]
    expected = np.concatenate([np.asarray(o, np.float32) for o in outputs])
    actual = tflite_logits(tflite_model, images).reshape(expected.shape)
    return compare_logits(expected, actual)


def compare_logits(expected, actual) -> SegmentationParity:
    """:class:`SegmentationParity` of two ``[B, H, W, C]`` logits arrays (Keras, LiteRT)."""
    expected, actual = np.asarray(expected, np.float32), np.asarray(actual, np.float32)
    if expected.shape != actual.shape or expected.ndim != 4:
        raise ValueError("The logits must both be [B, H, W, C] of one shape. Received: "
                         f"{expected.shape} and {actual.shape}.")
    a, b = expected.argmax(-1), actual.argmax(-1)
    same = a == b
    per_image = same.reshape(len(same), -1).mean(1)
    classes = np.unique(a)
    ious = [np.sum((a == c) & (b == c)) / np.sum((a == c) | (b == c)) for c in classes]
    diff = float(np.abs(expected - actual).max())
    spread = float(expected.max() - expected.min()) or 1.0
    return SegmentationParity(
        samples=len(expected), pixels=int(same.size), pixel_agreement=float(same.mean()),
        worst_image_agreement=float(per_image.min()), mean_iou=float(np.mean(ious)),
        max_abs_logit_error=diff, max_rel_logit_error=diff / spread,
        keras_classes=int(classes.size))


# -- internals ---------------------------------------------------------------


def _check_model(model, mode, name):
    if not isinstance(model, Segmenting):
        raise ValueError(
            f"{name} must be a keras_mobile.segmentation.Segmenter (what DeepLabV3, PSPNet "
            "and LRASPP return: image -> {'logits': [B, H, W, C]}) or its quantize_segmenter "
            f"twin. Received: {type(model).__name__}.")
    if not isinstance(model, Segmenter) and mode != "int8":
        raise ValueError("A quantization-aware segmenter converts with the ranges it learned: "
                         f"mode='int8'. Received: mode={mode!r}.")
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"The model's input shape must be static. Received: {(None, *shape)}.")


def _check_graph(flatbuffer, mode, path):
    """No dynamic tensor (MediaPipe allocates once), a uint8 input that takes raw pixels
    (MediaPipe feeds them as they are) and, for a GPU delegate, rank <= 4."""
    from keras_mobile.tflite.convert import ConversionError
    from keras_mobile.tflite.inspect import inspect

    info = inspect(flatbuffer)
    if info.dynamic_tensors:
        raise ConversionError(f"The {mode} TFLite segmenter has dynamic tensors "
                              f"({len(info.dynamic_tensors)}); nothing was written to {path}.",
                              flatbuffer=flatbuffer)
    (image,) = info.inputs
    if image.dtype == "UINT8":
        scale, zero_point = image.quantization or (0.0, 0)
        if abs(float(scale) - 1.0) > 1e-3 or int(zero_point) != 0:
            raise ConversionError(
                f"The {mode} TFLite segmenter's uint8 input is quantized with scale {scale:g}, "
                f"zero point {zero_point}, not 1 and 0: MediaPipe feeds raw pixels to it. "
                "A quantization-aware model's input range must be [0, 255] (quantize_segmenter "
                f"sets it). Nothing was written to {path}.", flatbuffer=flatbuffer)
    if info.max_rank > 4:
        warnings.warn(f"The {mode} TFLite segmenter has tensors of rank {info.max_rank}; GPU "
                      "delegates take rank <= 4.", stacklevel=3)


def _gate(parity, tolerance, mode, path, flatbuffer):
    from keras_mobile.tflite.convert import ConversionError

    failures = []
    if parity.pixel_agreement < tolerance.min_pixel_agreement:
        failures.append(f"pixel agreement {parity.pixel_agreement:.4%} < "
                        f"{tolerance.min_pixel_agreement:.4%}")
    if (tolerance.max_logit_error is not None
            and parity.max_rel_logit_error > tolerance.max_logit_error):
        failures.append(f"max |logit diff| is {parity.max_rel_logit_error:.3g} of the range "
                        f"(allowed {tolerance.max_logit_error:g})")
    if failures:
        raise ConversionError(
            f"The {mode} TFLite segmenter does not segment as the Keras model does: "
            f"{'; '.join(failures)} ({parity}). Nothing was written to {path}. Pass "
            "representative_data and check_data from the real input distribution, or a "
            "looser tolerance=.", flatbuffer=flatbuffer)


def _count(labels):
    return "no" if labels is None else len(labels)


def _short(labels, limit: int = 80) -> str:
    text = repr(labels)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# The float Segmenter and its quantization-aware twin both mix Segmenting in.
register_converter(Segmenting, convert_segmenter)
