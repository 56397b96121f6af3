"""Keras -> TFLite in four modes, checked in LiteRT before the file is written.

This module converts the graph it is given: which graph post-training int8
quantizes (percentile ranges) is decided in ``keras_mobile.quantization``, and
``keras_mobile.export`` composes both; nothing here imports quantization.

Every model is converted with batch 1 and its static input shape (a ``None``
dimension converts, then fails to allocate or splits XNNPACK), with builtin
ops only unless ``allow_select_tf_ops``. The result is run in LiteRT on
real-looking images and compared with the Keras model; a conversion that fails
the check raises :class:`ConversionError` and leaves any existing file at
``path`` untouched (the new model is written to a temporary file and renamed).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from typing import NamedTuple

import numpy as np

from keras_mobile import bridge
from keras_mobile.bridge import is_quantization_aware
from keras_mobile.files import atomic_path
from keras_mobile.tflite import runtime

# The converter's modes; the export modes users pick from (int8_percentile,
# qat_int8 too) are keras_mobile.export.EXPORT_MODES.
MODES = ("float32", "float16", "dynamic", "int8")
IO_TYPES = ("float32", "int8", "uint8")

# Model classes that convert through a function of their own (a detector: its anchors
# and NMS go into the file), registered by the package that defines them
# (:func:`register_converter`), so that this module imports none of them.
_CONVERTERS: dict[type, object] = {}


def register_converter(model_class: type, function) -> None:
    """:func:`convert` hands a ``model_class`` instance to ``function(model, path,
    **the arguments of convert)``."""
    _CONVERTERS[model_class] = function


class ConversionError(RuntimeError):
    """The converter failed, or the converted model does not compute what the
    Keras model computes; then ``flatbuffer`` holds the refused model (never
    written), e.g. to measure how far off it is."""

    def __init__(self, message: str, flatbuffer: bytes | None = None):
        super().__init__(message)
        self.flatbuffer = flatbuffer


class Tolerance(NamedTuple):
    """Parity gates: ``max_rel_diff`` is max |Keras - TFLite| over the Keras
    outputs' range; ``min_cosine`` bounds the mean per-image cosine similarity
    and ``min_top1`` the argmax agreement. ``None`` disables a gate."""

    max_rel_diff: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None


# For trained models. Untrained deep nets are chaotic under rounding (a random
# keras.applications MobileNetV2 in int8: cosine 0.14), so gate them with Tolerance().
TOLERANCES = {
    "float32": Tolerance(max_rel_diff=1e-4),
    "float16": Tolerance(min_cosine=0.999, min_top1=0.95),
    "dynamic": Tolerance(min_cosine=0.98, min_top1=0.9),
    "int8": Tolerance(min_cosine=0.9, min_top1=0.8),
}


@dataclasses.dataclass(frozen=True)
class Parity:
    """Keras vs LiteRT on ``samples`` images (outputs of the first model output)."""

    samples: int
    max_abs_diff: float
    max_rel_diff: float
    cosine: float  # mean over images
    worst_cosine: float
    top1_agreement: float  # over the decidable images; nan when there are none
    top1_samples: int = 0  # decidable: Keras' top-1 leads by more than 2 output steps

    def __str__(self):
        return (f"{self.samples} images: max |diff| {self.max_abs_diff:.3g} "
                f"({self.max_rel_diff:.3g} of the output range), cosine {self.cosine:.6f} "
                f"(worst {self.worst_cosine:.4f}), top-1 agreement {self.top1_agreement:.1%} "
                f"of {self.top1_samples} decidable images")


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    path: str
    mode: str
    input_type: str
    output_type: str
    size_bytes: int
    ops: dict
    max_rank: int
    dynamic_tensors: int
    float_ops: int
    xnnpack_partitions: int
    fully_delegated: bool
    parity: Parity | None
    seconds: float
    has_metadata: bool = False

    def __str__(self):
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1]))
        lines = [
            f"{self.path}: {self.mode} ({self.input_type} in, {self.output_type} out), "
            f"{self.size_bytes / 1e6:.2f} MB, converted in {self.seconds:.1f} s",
            f"  ops ({sum(self.ops.values())}): {ops}",
            f"  max tensor rank {self.max_rank}, dynamic tensors {self.dynamic_tensors}, "
            f"float ops {self.float_ops}",
            f"  XNNPACK: {self.xnnpack_partitions} partition(s), "
            f"{'fully delegated' if self.fully_delegated else 'NOT fully delegated'}",
            f"  Keras vs TFLite: {self.parity if self.parity else 'not checked'}",
        ]
        if self.has_metadata:
            lines.append("  metadata: yes")
        return "\n".join(lines)


def convert(
    model,
    path: str,
    *,
    mode: str = "float32",
    representative_data=None,
    num_calibration_samples: int = 100,
    inference_input_type: str | None = None,
    inference_output_type: str | None = None,
    check: bool = True,
    check_data=None,
    num_check_samples: int = 16,
    tolerance: Tolerance | None = None,
    metadata: dict | None = None,
    allow_select_tf_ops: bool = False,
    reference=None,
    denylisted_ops="xnnpack",
) -> ConversionReport:
    """Convert a Keras 3 (or tf_keras, for QAT) image model to a .tflite file.

    Args:
        model: a single-input model with a static (H, W, C) input shape: the
            graph that is converted.
        path: the ``.tflite`` file to write (replaced only after the check passes).
        mode: ``"float32"``, ``"float16"`` (float16 weights), ``"dynamic"``
            (int8 weights, float activations) or ``"int8"`` (full integer).
        representative_data: images for int8 calibration (array, ``tf.data``,
            iterable or callable; see ``keras_mobile.data.samples.as_images``).
            Required for ``int8``, quantization-aware (tfmot, tf_keras) models
            included: their fake-quantization ranges are kept, the rest is
            calibrated (each tensor's min/max: the converter's calibration;
            percentile ranges are ``keras_mobile.quantization.post_training_graph``'s).
            A Keras 3 model with hard-swish or GELU converts to int8 as its
            tf_keras twin with QAT's rewrites (``keras_mobile.bridge.to_tf_keras(
            for_quantization=True)``), whose int8 ops XNNPACK runs; a model the
            bridge cannot translate (``keras_mobile.bridge.translation_problem``)
            converts as it is, with a warning.
        inference_input_type, inference_output_type: ``"float32"`` (None: the
            default), ``"int8"`` or ``"uint8"``; integer I/O only in ``int8`` mode.
        check: run the model in LiteRT and compare with Keras (``tolerance``,
            default ``TOLERANCES[mode]``) on ``check_data`` or, when absent, the
            representative data or synthetic images.
        metadata: keyword arguments for ``keras_mobile.tflite.add_metadata``
            (labels, name, ...), written into the file before it is moved in place.
        allow_select_tf_ops: let the converter fall back to TensorFlow ops
            (Flex); such a model needs the Flex delegate and no mobile delegate
            will run it. Off by default.
        reference: the Keras model the parity check compares with (default:
            ``model``), e.g. the float Keras 3 model whose fake-quantized graph
            ``model`` is. Same input shape as ``model``.
        denylisted_ops: int8 only: the int8 ops that compute in float32 between a
            DEQUANTIZE and a QUANTIZE (TFLite's selective quantization,
            ``keras_mobile.tflite.selective``). ``"xnnpack"`` (default): those XNNPACK
            cannot run in int8 (SOFTMAX, RSQRT, ADD / MUL with out-of-range scales,
            BATCH_MATMUL with a right operand's zero point), so that the model stays
            in one XNNPACK partition; a sequence of TFLite op names (``"SOFTMAX"``);
            ``()`` for a fully integer model (NPUs, Edge TPU, microcontrollers).

    A registered model class converts through its own function instead
    (:func:`register_converter`): a ``keras_mobile.detection`` detector becomes a
    MediaPipe ObjectDetector file (``keras_mobile.detection.export_detector``, NMS
    form; ``metadata={"labels": [...]}`` names its classes, int8 takes uint8 input).

    Returns:
        A :class:`ConversionReport` (size, op counts, ranks, XNNPACK
        partitions, parity).
    """
    from keras_mobile.data.samples import as_images  # noqa: PLC0415

    for model_class, function in _CONVERTERS.items():
        if isinstance(model, model_class):
            return function(
                model, path, mode=mode, representative_data=representative_data,
                num_calibration_samples=num_calibration_samples,
                inference_input_type=inference_input_type,
                inference_output_type=inference_output_type, check=check,
                check_data=check_data, num_check_samples=num_check_samples,
                tolerance=tolerance, metadata=metadata,
                allow_select_tf_ops=allow_select_tf_ops, reference=reference,
                denylisted_ops=denylisted_ops)
    inference_input_type = inference_input_type or "float32"
    inference_output_type = inference_output_type or "float32"

    shape = _check_args(model, path, mode, representative_data, num_calibration_samples,
                        inference_input_type, inference_output_type, num_check_samples,
                        tolerance, metadata, reference, denylisted_ops)
    reference = model if reference is None else reference
    start = time.time()
    images = None
    if representative_data is not None:
        images = as_images(representative_data, num_calibration_samples, shape)
    source = _int8_graph(model) if mode == "int8" else model
    flatbuffer = _convert(source, shape, mode, images, inference_input_type,
                          inference_output_type, allow_select_tf_ops,
                          denylisted_ops=denylisted_ops)

    it = runtime.interpreter(flatbuffer)  # for the parity check and the partition count
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
        parity = None
        if check:
            checked = check_images(check_data, num_check_samples, shape, images)
            parity = _parity(reference, it, checked)
            _gate(parity, tolerance or TOLERANCES[mode], mode, path, flatbuffer)
        if metadata:
            from keras_mobile.tflite.metadata import add_metadata

            add_metadata(tmp, **metadata)
        report = _report(tmp, it, path, mode, inference_input_type, inference_output_type,
                         parity, time.time() - start)
    return report


def check_images(check_data, num_check_samples: int, shape, calibration=None):
    """The images a parity check runs on: ``check_data``, else the first calibration
    images, else synthetic ones."""
    from keras_mobile.data.samples import as_images, synthetic_images  # noqa: PLC0415

    if check_data is not None:
        return as_images(check_data, num_check_samples, shape)
    if calibration is not None:
        return calibration[:num_check_samples]
    return synthetic_images(num_check_samples, shape, seed=1)


def check_arguments(model, path: str, **kwargs) -> None:
    """Raise the ``ValueError`` that ``convert(model, path, **kwargs)`` would
    raise for its arguments, without converting (e.g. before the work that
    makes the graph to convert)."""
    import inspect  # noqa: PLC0415

    bound = inspect.signature(convert).bind(model, path, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    _check_args(model, path, a["mode"], a["representative_data"], a["num_calibration_samples"],
                a["inference_input_type"] or "float32", a["inference_output_type"] or "float32",
                a["num_check_samples"], a["tolerance"], a["metadata"], a["reference"],
                a["denylisted_ops"])


def with_full_pixel_range(images):
    """Calibration images whose first one has a 0 and a 255 pixel value, so that a uint8
    input's quantization is scale 1, zero point 0: clients (MediaPipe) feed raw pixels
    to it. None stays None."""
    if images is None:
        return None
    images = np.array(images, np.float32)
    images[0, 0, 0, 0], images[0, 0, 1, 0] = 0.0, 255.0
    return images


def measure_parity(model, tflite_model, images: np.ndarray) -> Parity:
    """Compare a Keras model and its .tflite (path or bytes) on ``images``."""
    return _parity(model, runtime.interpreter(tflite_model), images)


def _parity(model, it, images: np.ndarray) -> Parity:
    expected = _keras_predict(model, images)
    actual = runtime.predict(it, images)[0].reshape(expected.shape)
    diff = np.abs(expected - actual)
    spread = float(expected.max() - expected.min()) or 1.0
    e, a = expected.reshape(len(images), -1), actual.reshape(len(images), -1)
    cosine = np.sum(e * a, 1) / np.maximum(np.linalg.norm(e, axis=1) * np.linalg.norm(a, axis=1),
                                           1e-12)
    # An integer output cannot order classes closer than its step: top-1 is compared
    # only where Keras' top-1 leads its runner-up by more than two steps.
    step = float(it.get_output_details()[0]["quantization"][0])
    decidable = np.ones(len(e), bool)
    if e.shape[1] > 1:
        top2 = np.sort(e, axis=1)[:, -2:]
        decidable = top2[:, 1] - top2[:, 0] > 2 * step
    agree = e.argmax(1)[decidable] == a.argmax(1)[decidable]
    return Parity(samples=len(images), max_abs_diff=float(diff.max()),
                  max_rel_diff=float(diff.max()) / spread, cosine=float(cosine.mean()),
                  worst_cosine=float(cosine.min()),
                  top1_agreement=float(agree.mean()) if agree.size else float("nan"),
                  top1_samples=int(decidable.sum()))


# -- internals ---------------------------------------------------------------

def _check_args(model, path, mode, representative_data, num_calibration_samples,
                inference_input_type, inference_output_type, num_check_samples, tolerance,
                metadata, reference, denylisted_ops="xnnpack"):
    from keras_mobile.data.samples import check_count  # noqa: PLC0415
    from keras_mobile.tflite.selective import check_denylisted_ops  # noqa: PLC0415

    check_denylisted_ops(denylisted_ops)

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}. "
                         f"Received: mode={mode!r}")
    for name, value in (("inference_input_type", inference_input_type),
                        ("inference_output_type", inference_output_type)):
        if value not in IO_TYPES:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, IO_TYPES))}. "
                             f"Received: {name}={value!r}")
        if value != "float32" and mode != "int8":
            raise ValueError(f"{name}={value!r} needs mode='int8' (integer I/O exists only in "
                             f"a fully integer model). Received: mode={mode!r}")
    if not (hasattr(model, "inputs") and hasattr(model, "layers") and callable(model)):
        raise ValueError(f"model must be a Keras model. Received: model={type(model).__name__}")
    if len(model.inputs) != 1:
        raise ValueError(f"convert supports single-input image models. Received a model with "
                         f"{len(model.inputs)} inputs.")
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"The model's input shape must be static to convert: a None dimension converts, "
            f"then fails to allocate in LiteRT. Rebuild it with input_shape=(H, W, C). "
            f"Received: input shape {(None, *shape)}")
    if mode == "int8" and representative_data is None:
        qat = (" A quantization-aware model needs it too: the converter's TFLITE_BUILTINS_INT8 "
               "mode calibrates the tensors fake quantization does not cover (inside "
               "LayerNorm, attention, hard-swish)." if is_quantization_aware(model) else "")
        raise ValueError("mode='int8' needs representative_data (about 100 typical input images) "
                         f"to calibrate activation ranges.{qat} "
                         "Received: representative_data=None.")
    if reference is not None:
        if not (hasattr(reference, "inputs") and hasattr(reference, "layers")
                and callable(reference)):
            raise ValueError(f"reference must be a Keras model. "
                             f"Received: reference={type(reference).__name__}")
        if [tuple(x.shape[1:]) for x in reference.inputs] != [shape]:
            raise ValueError(f"reference must take the model's input shape {(None, *shape)}. "
                             f"Received: a reference with inputs "
                             f"{[(None, *x.shape[1:]) for x in reference.inputs]}")
    check_count("num_calibration_samples", num_calibration_samples)
    check_count("num_check_samples", num_check_samples)
    if tolerance is not None and not isinstance(tolerance, Tolerance):
        raise ValueError(f"tolerance must be a keras_mobile.tflite.Tolerance. "
                         f"Received: tolerance={tolerance!r}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict of add_metadata arguments. "
                         f"Received: metadata={metadata!r}")
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"path must end with .tflite. Received: path={path!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"The folder for path does not exist: {directory}. "
                         f"Received: path={path!r}")
    return shape


def _converter(model, shape):
    """A TFLiteConverter for ``model`` at batch 1 (no SHAPE/PACK ops for a dynamic
    batch), in inference mode.

    The converter saves its trackable root as a SavedModel first. With the model
    itself as root, tf_keras serializes and traces every layer (a tiny QAT
    MobileNetV2: 59 s); a root holding only the variables gives the same
    flatbuffer (measured: equal op counts, bitwise equal outputs) in 9 s, and
    halves a Keras 3 conversion (MobileNetV2 at 224: 7.5 s -> 3.5 s).
    """
    import tensorflow as tf

    function = tf.function(lambda image: model(image, training=False))
    concrete = function.get_concrete_function(
        tf.TensorSpec((1, *shape), model.inputs[0].dtype, name="image"))
    root = tf.Module()
    # Keras 3 variables wrap a tf.Variable (``_value``), which the SavedModel tracks.
    root.model_variables = [getattr(v, "_value", v) for v in model.variables]
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], root)


def _int8_graph(model):
    """What the int8 converter gets: a Keras 3 model with hard-swish or GELU as
    its tf_keras twin with QAT's rewrites (``keras_mobile.bridge.to_tf_keras(
    for_quantization=True)``: the same function in ops XNNPACK runs in int8),
    any other model as it is. A model the bridge cannot translate
    (keras.applications' MobileNetV3) converts as it is, with a warning."""
    if not bridge.has_rewrites(model):
        return model
    problem = bridge.translation_problem(model)
    if problem is not None:
        warnings.warn(f"{model.name!r} converts to int8 without keras_mobile's hard-swish/GELU "
                      f"rewrite, so XNNPACK will not run those int8 ops: it has no tf_keras "
                      f"translation ({problem})", stacklevel=3)
        return model
    return bridge.to_tf_keras(model, for_quantization=True)


def _convert(model, shape, mode, calibration, input_type, output_type,
             allow_select_tf_ops, converter=None, denylisted_ops="xnnpack") -> bytes:
    """Configures a converter for ``mode`` and runs it; an int8 result then computes
    ``denylisted_ops`` in float (``selective.dequantize_ops``). ``converter``: one to
    use instead of ``_converter(model, shape)`` (``keras_mobile.detection.export``
    passes a ``from_saved_model`` one, which keeps ``TFLite_Detection_PostProcess``);
    ``model`` then only names the model in errors."""
    import tensorflow as tf

    if converter is None:
        converter = _converter(model, shape)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, input_type)
        converter.inference_output_type = getattr(tf, output_type)
    if calibration is not None and mode == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
    if allow_select_tf_ops:
        ops = [*ops, tf.lite.OpsSet.SELECT_TF_OPS]
    converter.target_spec.supported_ops = ops
    try:
        flatbuffer = converter.convert()
    except Exception as e:  # the converter raises several unrelated types
        message = str(e).strip().splitlines()
        detail = "\n".join(line for line in message if "error" in line.lower())[:2000]
        raise ConversionError(f"TFLite conversion of {model.name!r} to mode={mode!r} failed: "
                              f"{detail or ' '.join(message[:5])}") from e
    if mode == "int8" and denylisted_ops:
        from keras_mobile.tflite.selective import dequantize_ops  # noqa: PLC0415

        flatbuffer = dequantize_ops(flatbuffer, denylisted_ops)
    return flatbuffer


def _keras_predict(model, images: np.ndarray) -> np.ndarray:
    outputs = [model(images[i:i + 8], training=False) for i in range(0, len(images), 8)]
    outputs = [o[0] if isinstance(o, (list, tuple)) else o for o in outputs]
    return np.concatenate([np.asarray(o, np.float32) for o in outputs])


def _gate(parity: Parity, tolerance: Tolerance, mode: str, path: str, flatbuffer: bytes):
    failures = []
    if tolerance.max_rel_diff is not None and parity.max_rel_diff > tolerance.max_rel_diff:
        failures.append(f"max |diff| is {parity.max_rel_diff:.3g} of the output range "
                        f"(allowed {tolerance.max_rel_diff:g})")
    if tolerance.min_cosine is not None and parity.cosine < tolerance.min_cosine:
        failures.append(f"cosine similarity {parity.cosine:.6f} < {tolerance.min_cosine}")
    if (tolerance.min_top1 is not None and parity.top1_samples
            and parity.top1_agreement < tolerance.min_top1):
        failures.append(f"top-1 agreement {parity.top1_agreement:.1%} < {tolerance.min_top1:.1%}")
    if failures:
        raise ConversionError(
            f"The {mode} TFLite model does not compute what the Keras model computes: "
            f"{'; '.join(failures)} ({parity}). Nothing was written to {path}. Pass "
            f"representative_data from the real input distribution, or a looser tolerance=.",
            flatbuffer=flatbuffer)


def _report(tmp, it, path, mode, input_type, output_type, parity, seconds) -> ConversionReport:
    from keras_mobile.tflite.inspect import inspect

    info = inspect(tmp)
    partitions, fully = runtime.delegation(it)
    return ConversionReport(
        path=os.fspath(path), mode=mode, input_type=input_type, output_type=output_type,
        size_bytes=os.path.getsize(tmp), ops=dict(info.ops), max_rank=info.max_rank,
        dynamic_tensors=len(info.dynamic_tensors), float_ops=len(info.float_ops),
        xnnpack_partitions=partitions, fully_delegated=fully, parity=parity, seconds=seconds,
        has_metadata=info.has_metadata)
