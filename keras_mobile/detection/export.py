"""A keras_mobile detector to a ``.tflite`` file that MediaPipe's ``ObjectDetector`` runs.

Two forms (``specs/dense.md`` §2-3):

* ``form="nms"`` (4 outputs): the detector, then its activation (softmax or sigmoid),
  then ``TFLite_Detection_PostProcess`` with the anchors as a constant
  (``[N, 4]`` y_center, x_center, height, width normalized to the input size, so the
  boxes come out normalized, as MediaPipe needs). The op runs **regular (per-class)
  NMS** (``use_regular_nms=True``, ``detections_per_class = max_detections``): the
  class-aware NMS of :func:`keras_mobile.detection.postprocess.decode` and mmdet,
  not the op's faster class-agnostic default. Outputs: boxes ``[1, D, 4]`` (ymin,
  xmin, ymax, xmax), classes ``[1, D]`` (0-based), scores ``[1, D]``, count ``[1]``.
* ``form="raw"`` (2 outputs): ``location`` ``[1, N, 4]`` (the box encodings) and
  ``score`` ``[1, N, C]`` (activated, the softmax background column dropped); the
  anchors and scales go into the ``DETECTOR_METADATA`` metadata, and MediaPipe
  decodes and runs its own NMS (class-agnostic, one class per box).

Modes: ``float32``, ``float16`` (float16 weights), ``dynamic`` (int8 weights) and
``int8`` (full-integer body with a uint8 input, as MediaPipe needs; the
post-processing op, which has no int8 kernel, stays float behind a DEQUANTIZE, and
every output is float32).

How (the converter's quirks): the op exists only as an empty ``tf.function`` with
``experimental_implements`` that the MLIR converter legalizes, and it survives only
``TFLiteConverter.from_saved_model`` (``from_concrete_functions`` inlines it away);
the Keras variables are frozen to constants first (a SavedModel with variables keeps
``READ_VARIABLE`` ops that break int8 calibration). The converter is then configured
and run by :mod:`keras_mobile.tflite.convert` (the same modes, calibration, error
handling; int8 converts a model with hard-swish or GELU as its tf_keras twin, as for
classifiers); the file is written atomically after a parity check on detections, and
keras_mobile's metadata writer (:func:`keras_mobile.tflite.metadata.add_detector_metadata`)
adds what MediaPipe reads.

Parity: Keras ``decode`` + class-aware NMS against the LiteRT detections, image by
image: a detection agrees when the other side has one of the same class with IoU at
least ``min_iou``, over the ``top_k`` best of each side (:class:`DetectionTolerance`).

Example:
    >>> det = keras_mobile.detection.SSDLite("EMO1M", num_classes=3, backbone_weights=None)
    >>> report = keras_mobile.detection.export_detector(
    ...     det, "det.tflite", labels=["cat", "dog", "bird"], mode="int8",
    ...     representative_data=images)
    >>> print(report)  # size, ops, XNNPACK partitions, detection parity
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import warnings
from typing import NamedTuple

import numpy as np

from keras_mobile.detection import anchors as anchors_lib
from keras_mobile.detection import postprocess
from keras_mobile.tflite.convert import (  # the converter's modes
    MODES,
    register_converter,
    with_full_pixel_range,
)

FORMS = ("nms", "raw")
POSTPROCESS_OP = "TFLite_Detection_PostProcess"
NMS_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
RAW_OUTPUTS = ("location", "score")


class DetectionTolerance(NamedTuple):
    """The detection parity gate: at least ``min_agreement`` of the ``top_k`` best
    detections of each side (Keras, LiteRT) per image have a detection of the same
    class on the other side with IoU >= ``min_iou``."""

    min_agreement: float = 1.0
    min_iou: float = 0.9
    top_k: int = 10


# For trained models; untrained ones give noise detections that rounding reorders:
# pass a looser tolerance or check_data where they detect something definite.
TOLERANCES = {
    "float32": DetectionTolerance(1.0, 0.9),
    "float16": DetectionTolerance(0.9, 0.9),
    "dynamic": DetectionTolerance(0.8, 0.8),
    "int8": DetectionTolerance(0.8, 0.8),
}


@dataclasses.dataclass(frozen=True)
class DetectionParity:
    """Keras decode + NMS against LiteRT on ``samples`` images (pixels of the input)."""

    samples: int
    keras_detections: int  # compared: the top_k best per image, summed
    tflite_detections: int
    recall: float  # Keras detections found by LiteRT (same class, IoU >= min_iou)
    precision: float  # LiteRT detections found in Keras'
    mean_iou: float  # over the Keras detections, with their best same-class LiteRT box
    min_iou: float
    max_score_diff: float  # over the matched pairs
    iou_threshold: float  # the min_iou of the match
    top_k: int

    @property
    def agreement(self) -> float:
        return min(self.recall, self.precision)

    def __str__(self):
        return (f"{self.samples} images, top {self.top_k} detections: Keras "
                f"{self.keras_detections}, LiteRT {self.tflite_detections}; agreement "
                f"(same class, IoU >= {self.iou_threshold:g}) {self.agreement:.1%} "
                f"(recall {self.recall:.1%}, precision {self.precision:.1%}), IoU mean "
                f"{self.mean_iou:.4f} min {self.min_iou:.4f}, max |score diff| "
                f"{self.max_score_diff:.4f}")


def export_detector(model, path, *, labels, form: str = "nms", mode: str = "float32",
                    representative_data=None, num_calibration_samples: int = 100,
                    score_threshold: float | None = None, iou_threshold: float | None = None,
                    max_detections: int | None = None, check: bool = True, check_data=None,
                    num_check_samples: int = 8, tolerance: DetectionTolerance | None = None,
                    metadata: dict | None = None, reference=None,
                    denylisted_ops="xnnpack"):
    """Convert a keras_mobile detector to a ``.tflite`` file with MediaPipe metadata.

    Args:
        model: a :class:`keras_mobile.detection.Detector` (what ``SSDLite`` and
            ``RetinaNet`` return) with a static input shape, or its quantization-aware
            twin (:func:`keras_mobile.detection.quantize_detector`, ``mode="int8"``: the
            ranges it learned are kept).
        path: the ``.tflite`` file (replaced only after the parity check passes).
        labels: the names of its foreground classes, in class order.
        form: ``"nms"`` (4 outputs, NMS in the model) or ``"raw"`` (2 outputs,
            ``DETECTOR_METADATA``; the client runs NMS).
        mode: ``"float32"``, ``"float16"``, ``"dynamic"`` or ``"int8"`` (uint8 input,
            float32 outputs).
        representative_data: calibration images for ``int8`` (see
            ``keras_mobile.data.samples.as_images``), raw [0, 255] pixels.
        num_calibration_samples: how many of them to use.
        score_threshold, iou_threshold, max_detections: the post-processing
            settings (default: the model's, its reference's test settings). The
            score threshold is also written to the metadata (MediaPipe's default).
        check: compare detections with Keras (see :class:`DetectionTolerance`) before
            writing; on failure :class:`keras_mobile.tflite.ConversionError`.
        check_data: images for the check (default: the calibration images, else
            synthetic ones).
        num_check_samples: how many images to check.
        tolerance: the gate (default ``TOLERANCES[mode]``).
        metadata: extra :func:`keras_mobile.tflite.metadata.add_detector_metadata`
            arguments (``name``, ``version``, ``description``, ``author``, ``license``).
        reference: the detector the parity check compares with (default: ``model``),
            e.g. the float detector of a quantization-aware ``model``.
        denylisted_ops: int8 ops computed in float32 (``keras_mobile.tflite.convert``'s;
            default: those XNNPACK does not run in int8).

    Returns:
        A ``keras_mobile.tflite.ConversionReport`` whose ``parity`` is a
        :class:`DetectionParity` (None without ``check``).
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
    )
    from keras_mobile.tflite.metadata import add_detector_metadata, check_labels

    _check_model(model, mode)
    if reference is not None:
        _check_model(reference, "float32")
        if reference.image_size != model.image_size or \
                reference.num_classes != model.num_classes:
            raise ValueError("reference must be a detector of the model's input size and "
                             f"classes {model.image_size}, {model.num_classes}. Received: "
                             f"{reference.image_size}, {reference.num_classes}.")
    if form not in FORMS:
        raise ValueError(f'form must be "nms" or "raw". Received: form={form!r}.')
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}. "
                         f"Received: mode={mode!r}.")
    input_type = "uint8" if mode == "int8" else "float32"
    check_arguments(model, path, mode=mode, representative_data=representative_data,
                    num_calibration_samples=num_calibration_samples,
                    inference_input_type=input_type, num_check_samples=num_check_samples,
                    denylisted_ops=denylisted_ops)
    labels = check_labels(labels)
    if labels is None or len(labels) != model.num_classes:
        raise ValueError(f"labels must name the model's {model.num_classes} classes, in class "
                         f"order. Received: labels={labels!r}.")
    settings = model.decode_settings(
        **{k: v for k, v in (("score_threshold", score_threshold),
                             ("iou_threshold", iou_threshold),
                             ("max_detections", max_detections)) if v is not None})
    settings["image_size"] = None  # TFLite does not clip boxes to the image
    postprocess.check_settings(settings["scales"], settings["score_threshold"],
                               settings["iou_threshold"], settings["max_detections"])
    if tolerance is not None and not isinstance(tolerance, DetectionTolerance):
        raise ValueError(f"tolerance must be a DetectionTolerance. "
                         f"Received: tolerance={tolerance!r}.")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {
            "name", "version", "description", "author", "license"}):
        raise ValueError("metadata must be a dict of name, version, description, author, "
                         f"license. Received: metadata={metadata!r}.")
    check_count("num_check_samples", num_check_samples)

    start = time.time()
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    images = None
    if representative_data is not None:
        images = as_images(representative_data, num_calibration_samples, shape)
    calibration = with_full_pixel_range(images) if mode == "int8" else images
    source = _int8_graph(model) if mode == "int8" and _is_float(model) else model
    anchors = model.anchors
    normalized = anchors_lib.to_center_normalized(anchors, shape[:2])  # (yc, xc, h, w)
    with tempfile.TemporaryDirectory() as saved:
        _save(source, saved, shape, form, model.activation, settings, model.num_classes,
              normalized)
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.allow_custom_ops = form == "nms"
        flatbuffer = _convert(
            model, shape, mode, calibration, input_type, "float32", False, converter=converter,
            denylisted_ops=denylisted_ops)

    it = runtime.interpreter(flatbuffer)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
        parity = None
        if check:
            checked = check_images(check_data, num_check_samples, shape, images)
            parity = measure_detection_parity(reference or model, it, checked, form=form,
                                              tolerance=tolerance or TOLERANCES[mode],
                                              **settings)
            _gate(parity, tolerance or TOLERANCES[mode], mode, form, path, flatbuffer)
            if parity.keras_detections == parity.tflite_detections == 0:
                warnings.warn(
                    f"Neither the Keras model nor its {mode} TFLite file detects anything above "
                    f"score_threshold={settings['score_threshold']:g} on the "
                    f"{parity.samples} check images, so the detection parity is unchecked. "
                    "Pass check_data where the model detects something.", stacklevel=2)
        raw = form == "raw"
        add_detector_metadata(
            tmp, labels=labels, score_threshold=settings["score_threshold"],
            anchors=normalized if raw else None, box_scales=model.box_scales if raw else None,
            sigmoid_score=False,  # the model outputs probabilities
            **{"name": os.path.splitext(os.path.basename(os.fspath(path)))[0],
               **(metadata or {})})
        report = _report(tmp, it, path, mode, input_type, "float32", parity,
                         time.time() - start)
    return report


def convert_detector(model, path, *, mode="float32", representative_data=None,
                     num_calibration_samples=100, inference_input_type=None,
                     inference_output_type=None, check=True, check_data=None,
                     num_check_samples=8, tolerance=None, metadata=None,
                     allow_select_tf_ops=False, reference=None, denylisted_ops="xnnpack"):
    """``keras_mobile.tflite.convert`` for a detector: :func:`export_detector` in the NMS
    form, ``metadata`` holding ``labels`` (required) and the writer's other fields."""
    expected = "uint8" if mode == "int8" else "float32"
    for name, value, want in (("inference_input_type", inference_input_type, expected),
                              ("inference_output_type", inference_output_type, "float32")):
        if value not in (None, want):
            raise ValueError(f"A {mode} detector takes {want} for {name} (MediaPipe's "
                             f"ObjectDetector). Received: {name}={value!r}.")
    if allow_select_tf_ops:
        raise ValueError("allow_select_tf_ops does not apply to a detector: it converts to "
                         "builtin ops and TFLite_Detection_PostProcess.")
    from keras_mobile.tflite.convert import Tolerance

    if isinstance(tolerance, Tolerance):
        raise ValueError("A detector's parity gate compares detections: pass a "
                         "keras_mobile.detection.DetectionTolerance. "
                         f"Received: tolerance={tolerance!r}.")
    metadata = dict(metadata or {})
    if "labels" not in metadata:
        raise ValueError("A detector needs metadata={'labels': [...]}, the names of its "
                         f"{model.num_classes} classes (MediaPipe reports them). "
                         f"Received: metadata={metadata or None!r}.")
    labels = metadata.pop("labels")
    return export_detector(model, path, labels=labels, mode=mode,
                           representative_data=representative_data,
                           num_calibration_samples=num_calibration_samples, check=check,
                           check_data=check_data, num_check_samples=num_check_samples,
                           tolerance=tolerance, metadata=metadata or None, reference=reference,
                           denylisted_ops=denylisted_ops)


def tflite_detections(it, images, *, form: str, anchors=None, activation=None, scales=None,
                      **settings) -> list[postprocess.Detections]:
    """Detections of a converted detector in LiteRT, in input pixels: the NMS form's
    outputs read by role (tensor index order: boxes < classes < scores < count), the raw
    form's decoded with :func:`~keras_mobile.detection.postprocess.decode` (``anchors``
    in pixels, ``scales`` and the NMS ``settings``; its scores are already activated)."""
    from keras_mobile.tflite import runtime

    height, width = it.get_input_details()[0]["shape"][1:3]
    found = []
    if form == "nms":
        order = sorted(it.get_output_details(), key=lambda d: d["index"])
        outs = runtime.predict(it, images)
        by_index = {d["index"]: o for d, o in zip(it.get_output_details(), outs, strict=True)}
        boxes, classes, scores, counts = (by_index[d["index"]] for d in order)
        size = np.array([height, width, height, width], np.float32)
        for b, c, s, n in zip(boxes, classes, scores, counts, strict=True):
            n = int(np.asarray(n).reshape(-1)[0])
            found.append(postprocess.Detections((b[:n] * size).astype(np.float32),
                                                s[:n].astype(np.float32),
                                                np.rint(c[:n]).astype(np.int64)))
        return found
    names = _signature_outputs(it)
    outs = runtime.predict(it, images)
    by_name = {names[d["index"]]: o for d, o in zip(it.get_output_details(), outs, strict=True)}
    settings = {k: v for k, v in settings.items() if k != "activation"}
    return postprocess.decode(by_name["location"], by_name["score"], anchors, activation=None,
                              scales=scales, **settings)


def measure_detection_parity(model, tflite_model, images, *, form: str = "nms",
                             tolerance: DetectionTolerance = DetectionTolerance(),
                             **settings) -> DetectionParity:
    """Compare the detections of ``model`` (Keras, :func:`postprocess.decode`) and its
    ``.tflite`` (a path, bytes or an interpreter) on ``images``; ``settings``:
    ``decode``'s (default: the model's, without clipping)."""
    from keras_mobile.tflite import runtime

    it = (tflite_model if hasattr(tflite_model, "invoke")
          else runtime.interpreter(tflite_model))
    settings = {**model.decode_settings(image_size=None), **settings}
    images = np.asarray(images, np.float32)
    anchors = model.anchors
    outputs = [model(images[i:i + 8], training=False) for i in range(0, len(images), 8)]
    keras_found = postprocess.decode(
        np.concatenate([np.asarray(o["box_encodings"]) for o in outputs]),
        np.concatenate([np.asarray(o["class_logits"]) for o in outputs]), anchors, **settings)
    lite_found = tflite_detections(it, images, form=form, anchors=anchors, **settings)
    return _compare(keras_found, lite_found, tolerance)


# -- internals ---------------------------------------------------------------


def _is_float(model) -> bool:
    return isinstance(model, postprocess.Detector)


def _check_model(model, mode):
    if not isinstance(model, postprocess.Decoding):
        raise ValueError(
            "model must be a keras_mobile.detection.Detector (what SSDLite and RetinaNet "
            "return: it knows its anchors, activation and box scales) or its "
            f"quantize_detector twin. Received: {type(model).__name__}.")
    if not _is_float(model) and mode != "int8":
        raise ValueError("A quantization-aware detector converts with the ranges it learned: "
                         f"mode='int8'. Received: mode={mode!r}.")
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"The model's input shape must be static. Received: {(None, *shape)}.")


def _implements(settings, num_classes, scales) -> str:
    """The ``experimental_implements`` attributes of ``TFLite_Detection_PostProcess``."""
    y, x, h, w = scales
    attrs = [("max_detections", "i", settings["max_detections"]),
             ("max_classes_per_detection", "i", 1),
             ("detections_per_class", "i", settings["max_detections"]),
             ("use_regular_nms", "b", "true"),
             ("nms_score_threshold", "f", settings["score_threshold"]),
             ("nms_iou_threshold", "f", settings["iou_threshold"]),
             ("y_scale", "f", y), ("x_scale", "f", x), ("h_scale", "f", h), ("w_scale", "f", w),
             ("num_classes", "i", num_classes)]
    text = " ".join(f'attr {{ key: "{key}" value {{ {kind}: '
                    f'{f"{value:f}" if kind == "f" else value} }} }}'
                    for key, kind, value in attrs)
    return f'name: "{POSTPROCESS_OP}" {text}'


def _raw_outputs(source, image):
    """``(box_encodings, class_logits)`` of a Keras 3 detector (dict outputs) or its
    tf_keras twin (a list in ``output_names`` order)."""
    out = source(image, training=False)
    if isinstance(out, dict):
        return out["box_encodings"], out["class_logits"]
    names = list(source.output_names)
    return out[names.index("box_encodings")], out[names.index("class_logits")]


def _save(source, directory, shape, form, activation, settings, num_classes, anchors):
    """Writes the SavedModel to convert: the frozen detector, its activation, then the
    post-processing op (``form="nms"``) or the raw outputs."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec((1, *shape), tf.float32, name="image")
    frozen = convert_variables_to_constants_v2(
        tf.function(lambda image: _raw_outputs(source, image)).get_concrete_function(spec))
    scales = settings["scales"]

    @tf.function(experimental_implements=_implements(settings, num_classes, scales))
    def post_process(box_encodings, class_predictions, anchor_boxes):  # noqa: ARG001
        # Empty: the converter replaces the call with the op (its outputs' shapes too).
        boxes = tf.constant(0.0, tf.float32, name="boxes")
        classes = tf.constant(0.0, tf.float32, name="classes")
        scores = tf.constant(0.0, tf.float32, name="scores")
        count = tf.constant(0.0, tf.float32, name="num_detections")
        return boxes, classes, scores, count

    class Module(tf.Module):
        @tf.function(input_signature=[spec])
        def serve(self, image):
            box_encodings, logits = frozen(image)
            if activation == "softmax":
                scores = tf.nn.softmax(logits, axis=-1)
            else:
                scores = tf.math.sigmoid(logits)
            if form == "raw":
                if activation == "softmax":
                    scores = scores[..., 1:]
                return {"location": box_encodings, "score": scores}
            # Softmax keeps the background column: the op skips column 0 (num_classes + 1).
            outputs = post_process(box_encodings, scores, tf.constant(anchors, tf.float32))
            return dict(zip(NMS_OUTPUTS, outputs, strict=True))

    module = Module()
    tf.saved_model.save(module, directory,
                        signatures={"serving_default": module.serve.get_concrete_function()})


def _signature_outputs(it) -> dict:
    """Output tensor index -> signature output name (one signature)."""
    signatures = it._get_full_signature_list()  # noqa: SLF001
    (signature,) = signatures.values()
    return {index: name for name, index in signature["outputs"].items()}


def _iou(box, boxes):
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.maximum(bottom_right - top_left, 0), axis=1)
    area = lambda b: np.prod(np.maximum(b[..., 2:] - b[..., :2], 0), axis=-1)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _matches(a, b, top_k):
    """For a's ``top_k`` detections: the IoU of the best same-class box of b (0 when there
    is none) and the score difference with it (nan when there is none)."""
    ious, diffs = [], []
    for i in range(min(top_k, len(a.scores))):
        same = np.flatnonzero(b.classes == a.classes[i])
        if not same.size:
            ious.append(0.0)
            diffs.append(np.nan)
            continue
        overlap = _iou(a.boxes[i].astype(np.float64), b.boxes[same].astype(np.float64))
        j = int(np.argmax(overlap))
        ious.append(float(overlap[j]))
        diffs.append(abs(float(a.scores[i]) - float(b.scores[same[j]])))
    return ious, diffs


def _compare(keras_found, lite_found, tolerance) -> DetectionParity:
    forward, backward, diffs = [], [], []
    for a, b in zip(keras_found, lite_found, strict=True):
        ious, d = _matches(a, b, tolerance.top_k)
        forward += ious
        diffs += [x for x, iou in zip(d, ious, strict=True) if iou >= tolerance.min_iou]
        backward += _matches(b, a, tolerance.top_k)[0]
    share = lambda ious: (float(np.mean(np.asarray(ious) >= tolerance.min_iou))  # noqa: E731
                          if ious else 1.0)
    return DetectionParity(
        samples=len(keras_found), keras_detections=len(forward),
        tflite_detections=len(backward), recall=share(forward), precision=share(backward),
        mean_iou=float(np.mean(forward)) if forward else float("nan"),
        min_iou=float(np.min(forward)) if forward else float("nan"),
        max_score_diff=float(np.max(diffs)) if diffs else float("nan"),
        iou_threshold=tolerance.min_iou, top_k=tolerance.top_k)


def _gate(parity, tolerance, mode, form, path, flatbuffer):
    from keras_mobile.tflite.convert import ConversionError

    if parity.agreement < tolerance.min_agreement:
        raise ConversionError(
            f"The {mode} {form} TFLite detector does not detect what the Keras model "
            f"detects: agreement {parity.agreement:.1%} < {tolerance.min_agreement:.1%} "
            f"({parity}). Nothing was written to {path}. Pass representative_data and "
            "check_data from the real input distribution, or a looser tolerance=.",
            flatbuffer=flatbuffer)


register_converter(postprocess.Decoding, convert_detector)
