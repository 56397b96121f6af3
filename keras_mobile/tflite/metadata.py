"""TFLite model metadata for image classifiers (and detectors, segmenters), in the official
format.

Android clients (MediaPipe Tasks ``ImageClassifier``, the TFLite Task Library) read a
``ModelMetadata`` flatbuffer (schema ``metadata_schema.fbs``, file identifier ``M001``)
stored in a model buffer that the ``Model.metadata`` entry named ``TFLITE_METADATA``
points at, and the files it names (``labels.txt``) from a ZIP archive appended to the
``.tflite`` file. This module writes both the way the official ``MetadataPopulator``
does, with the official schema classes (``mediapipe.tasks.metadata``) and the TFLite
schema classes of ``inspect.schema``, because the official writers do not import next
to TF 2.21.

What the clients require of an image classifier (MediaPipe ``image_tensor_specs.cc``
and ``classification_postprocessing_graph.cc``): one subgraph, one ``1 x H x W x 3``
input of type float32 or uint8 (int8 is refused), ``NormalizationOptions`` for a
float32 input (uint8 pixels are fed as they are: the input's quantization maps them),
and float32 or uint8 outputs (uint8 scores are dequantized; int8 is refused).
"""

import functools
import io
import math
import numbers
import os
import warnings
import zipfile
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from keras_mobile.files import atomic_write
from keras_mobile.tflite.inspect import (
    METADATA_NAME,
    TFLITE_IDENTIFIER,
    is_tflite,
    schema,
    write_model,
)

LABELS_FILE = "labels.txt"
_METADATA_IDENTIFIER = b"M001"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so that the same call writes the same bytes


@functools.cache
def _schemas():
    """(metadata schema module, TFLite schema module), imported on first use."""
    try:
        from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb
    except ImportError as error:
        raise ImportError("TFLite metadata needs the official metadata schema from "
                          "mediapipe. Install it with `pip install mediapipe`.") from error
    return metadata_fb, schema()


class _ClassifierIO(NamedTuple):
    """What add_metadata needs to know about the model's single input and output."""

    input_name: str
    input_type: int
    height: int
    width: int
    channels: int
    input_quantization: tuple  # (scales, zero points) of the input tensor
    output_name: str
    output_type: int
    classes: int
    softmax: bool


def add_metadata(path, *, labels=None, name=None, version="1", description=None, author=None,
                 license=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), min_max=(0.0, 255.0),
                 color_space="RGB", output_path=None) -> str:
    """Writes image-classifier metadata (and ``labels.txt``) into a ``.tflite`` file.

    MediaPipe's ``ImageClassifier`` (and, by the same format, the TFLite Task Library)
    then runs the model with no extra code: it resizes images, feeds a float32 input
    ``(pixel - mean) / std`` or a uint8 input the raw pixels, and names the scores.
    Existing ``TFLITE_METADATA`` and any archive of associated files are replaced, so
    calling it again with the same arguments writes the same bytes. The file
    is written atomically: on any error the original is left as it was.

    Args:
        path: a ``.tflite`` model with one ``1 x H x W x C`` float32 or uint8 input and one
            ``1 x classes`` float32 or uint8 output.
        labels: class names in output order (one per class), or None for no labels file.
        name: model name; defaults to the file name without extension.
        version: model version string.
        description: what the model does; defaults to a one-line summary.
        author: model author, or None.
        license: license text or name, or None.
        mean: per-channel (or one shared) value subtracted from [0, 255] pixels before a
            float32 input. keras_mobile models normalize inside the graph, hence 0.
        std: per-channel (or one shared) divisor, > 0; 1 for keras_mobile models.
        min_max: range of the raw pixel values, recorded as input statistics.
        color_space: ``"RGB"`` or ``"GRAYSCALE"`` (MediaPipe accepts only RGB).
        output_path: where to write; defaults to ``path`` (in place).

    Returns:
        The path written.

    Example:
        >>> add_metadata("mobilenet_v2.tflite", labels=["cat", "dog"])  # doctest: +SKIP
        'mobilenet_v2.tflite'
    """
    metadata_fb, tflite_fb = _schemas()
    texts = _check_texts(name=name, version=version, description=description, author=author,
                         license=license)
    color_space = _check_color_space(color_space)
    mean, std = _check_normalization(mean, std, color_space)
    min_max = _check_min_max(min_max)
    labels = check_labels(labels)
    model_bytes = _read_tflite(path, "path")
    destination = os.fspath(path if output_path is None else output_path)
    if not os.path.isdir(os.path.dirname(os.path.abspath(destination))):
        raise ValueError("output_path must be in an existing directory. "
                         f"Received: output_path={output_path!r}.")
    io_ = _classifier_io(tflite_fb.Model.GetRootAs(model_bytes, 0), tflite_fb, color_space)
    if labels is not None and len(labels) != io_.classes:
        raise ValueError(f"labels must have one entry per class of the model's output "
                         f"({io_.classes}). Received: len(labels)={len(labels)}.")
    if io_.input_type == tflite_fb.TensorType.UINT8:
        _warn_if_quantization_disagrees(io_.input_quantization, mean, std)

    if texts["name"] is None:
        texts["name"] = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    if texts["description"] is None:
        texts["description"] = (f"Image classifier: {io_.height}x{io_.width} {color_space} "
                                f"input, {io_.classes} classes.")
    metadata = _model_metadata(metadata_fb, tflite_fb, io_, texts, labels=labels, mean=mean,
                               std=std, min_max=min_max, color_space=color_space)
    metadata.minParserVersion = min_parser_version(metadata)
    builder = _flatbuffers().Builder(1024)
    builder.Finish(metadata.Pack(builder), _METADATA_IDENTIFIER)
    model_bytes = _with_metadata_buffer(model_bytes, bytes(builder.Output()), tflite_fb)
    files = {} if labels is None else {LABELS_FILE: "\n".join(labels).encode("utf-8")}
    atomic_write(destination, _append_zip(model_bytes, files))
    return destination


def read_metadata(path) -> dict:
    """Reads back the metadata written by :func:`add_metadata` (or any official writer).

    Args:
        path: a ``.tflite`` file.

    Returns:
        A dict with ``name, version, description, author, license, min_parser_version``,
        ``input_names`` / ``output_names`` (metadata names), ``input_tensors`` /
        ``output_tensors`` (TFLite tensor names), ``mean, std, color_space, input_min,
        input_max`` (first input), ``labels`` (list or None: the first output's
        ``TENSOR_AXIS_LABELS`` file, for a detector its ``category`` or ``score``
        output's) and ``associated_files`` (the appended archive's members); an empty dict
        if the model has no ``TFLITE_METADATA``. A raw detector's ``DETECTOR_METADATA``:
        :func:`read_detector_options`. A segmenter's adds ``segmenter_activation``
        (``"NONE"``, ``"SIGMOID"`` or ``"SOFTMAX"``, from its ``SEGMENTER_METADATA``).
    """
    metadata_fb, tflite_fb = _schemas()
    model_bytes = _read_tflite(path, "path")
    model = tflite_fb.Model.GetRootAs(model_bytes, 0)
    buffer_index = _metadata_buffer_index(model)
    if buffer_index is None:
        return {}
    raw = model.Buffers(buffer_index).DataAsNumpy().tobytes()
    if raw[4:8] != _METADATA_IDENTIFIER:
        raise ValueError(f"The {METADATA_NAME} buffer of {path!r} is not a metadata flatbuffer "
                         f"(identifier {raw[4:8]!r}, expected {_METADATA_IDENTIFIER!r}).")
    meta = metadata_fb.ModelMetadataT.InitFromObj(
        metadata_fb.ModelMetadata.GetRootAs(raw, 0))
    archive = _archive_members(model_bytes)
    subgraph = (meta.subgraphMetadata or [metadata_fb.SubGraphMetadataT()])[0]
    inputs, outputs = subgraph.inputTensorMetadata or [], subgraph.outputTensorMetadata or []
    graph = model.Subgraphs(0)
    tensor_name = lambda i: _text(graph.Tensors(i).Name())  # noqa: E731
    result = {
        "name": _text(meta.name), "version": _text(meta.version),
        "description": _text(meta.description), "author": _text(meta.author),
        "license": _text(meta.license), "min_parser_version": _text(meta.minParserVersion),
        "input_names": [_text(t.name) for t in inputs],
        "output_names": [_text(t.name) for t in outputs],
        "input_tensors": [tensor_name(i) for i in graph.InputsAsNumpy()],
        "output_tensors": [tensor_name(i) for i in graph.OutputsAsNumpy()],
        "mean": None, "std": None, "color_space": None, "input_min": None, "input_max": None,
        "labels": None, "associated_files": sorted(archive),
    }
    if inputs:
        image = inputs[0]
        for unit in image.processUnits or []:
            if unit.optionsType == metadata_fb.ProcessUnitOptions.NormalizationOptions:
                result["mean"] = [float(v) for v in unit.options.mean]
                result["std"] = [float(v) for v in unit.options.std]
                break
        if image.content is not None and image.content.contentPropertiesType == (
                metadata_fb.ContentProperties.ImageProperties):
            spaces = {v: k for k, v in vars(metadata_fb.ColorSpaceType).items()
                      if not k.startswith("_")}
            result["color_space"] = spaces.get(image.content.contentProperties.colorSpace)
        if image.stats is not None:
            result["input_min"] = _floats(image.stats.min)
            result["input_max"] = _floats(image.stats.max)
    # A classifier's labels are its output's TENSOR_AXIS_LABELS; a detector's those of
    # its score (raw) or category (TENSOR_VALUE_LABELS) output.
    label_types = (metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS,
                   metadata_fb.AssociatedFileType.TENSOR_VALUE_LABELS)
    for tensor in outputs:
        for entry in tensor.associatedFiles or []:
            if (entry.type in label_types and not entry.locale
                    and _text(entry.name) in archive):
                result["labels"] = archive[_text(entry.name)].decode("utf-8").splitlines()
                break
        if result["labels"] is not None:
            break
    activation = _segmenter_activation(subgraph)
    if activation is not None:  # only a segmenter's metadata has the key
        result["segmenter_activation"] = activation
    return result


# ---------------------------------------------------------------------------------------
# Object detectors (MediaPipe ObjectDetector; specs/dense.md §3)

DETECTOR_METADATA_NAME = "DETECTOR_METADATA"  # the custom metadata entry MediaPipe reads
_DETECTOR_OPTIONS_IDENTIFIER = b"V001"  # object_detector_metadata_schema.fbs
# The metadata names MediaPipe's detection_postprocessing_graph.cc maps tensors by.
NMS_ROLES = ("location", "category", "score", "number of detections")
RAW_ROLES = ("location", "score")
_DETECTION_GROUP = "detection_result"  # the official writer's output tensor group


def add_detector_metadata(path, *, labels, anchors=None, box_scales=None,
                          sigmoid_score: bool = False, score_threshold=None, name=None,
                          version="1", description=None, author=None, license=None,
                          mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), min_max=(0.0, 255.0),
                          output_path=None) -> str:
    """Writes object-detector metadata (and ``labels.txt``) into a ``.tflite`` file.

    MediaPipe's ``ObjectDetector`` then runs the model. Two forms, told apart by the
    number of outputs (as MediaPipe does):

    * **4 outputs** (``TFLite_Detection_PostProcess`` in the model): the outputs are
      given the roles ``location``, ``category``, ``score``, ``number of detections``
      in the order of their tensor indices (the op allocates them in that order; the
      converter lists them in another), as the official writer does. ``location``
      gets ``BoundingBoxProperties`` BOUNDARIES / RATIO with index [1, 0, 3, 2]
      (``ymin, xmin, ymax, xmax``), ``category`` the labels (``TENSOR_VALUE_LABELS``);
      the first three form the output tensor group ``detection_result``.
      Minimum parser version 1.2.0.
    * **2 outputs** (raw: ``location`` ``[1, N, 4]`` box encodings (ty, tx, th, tw),
      ``score`` ``[1, N, C]``): MediaPipe decodes and runs NMS itself, reading the
      ``DETECTOR_METADATA`` custom metadata (an ``ObjectDetectorOptions`` flatbuffer:
      the N anchors, the scales, ``apply_exponential_on_box_size``,
      ``sigmoid_score``); the labels are ``TENSOR_AXIS_LABELS`` of ``score``. Which
      output is which comes from the model's signature (outputs named ``location``
      and ``score``), else from the shapes. Minimum parser version 1.5.0.

    Existing metadata and associated files are replaced; the file is written
    atomically.

    Args:
        path: a ``.tflite`` detector with one ``1 x H x W x 3`` float32 or uint8 input
            and 4 or 2 float32 outputs.
        labels: the names of the C foreground classes, in class order.
        anchors: 2-output form: ``[N, 4]`` (y_center, x_center, height, width)
            normalized to the input size
            (:func:`keras_mobile.detection.to_center_normalized`).
        box_scales: 2-output form: ``(y_scale, x_scale, h_scale, w_scale)``
            (``1 / stds``: (10, 10, 5, 5) for SSDLite).
        sigmoid_score: 2-output form: whether MediaPipe applies a sigmoid to
            ``score`` (False when the model outputs probabilities).
        score_threshold: written as ``ScoreThresholdingOptions`` of ``score``: the
            default threshold of MediaPipe (which its ``score_threshold`` option
            overrides), or None.
        name, version, description, author, license, mean, std, min_max: as
            :func:`add_metadata` (keras_mobile detectors take raw [0, 255] pixels:
            mean 0, std 1).
        output_path: where to write; defaults to ``path`` (in place).

    Returns:
        The path written.
    """
    if score_threshold is not None and (
            not isinstance(score_threshold, numbers.Real) or not math.isfinite(score_threshold)):
        raise ValueError(f"score_threshold must be a finite number or None. "
                         f"Received: score_threshold={score_threshold!r}.")
    metadata_fb, tflite_fb, texts, mean, std, min_max, labels, model_bytes, destination = \
        _dense_arguments(path, output_path, labels, "the detector's classes (MediaPipe counts "
                         "the classes of a 4-output model by its labels)",
                         name=name, version=version, description=description, author=author,
                         license=license, mean=mean, std=std, min_max=min_max)
    io_ = _detector_io(tflite_fb.Model.GetRootAs(model_bytes, 0), tflite_fb)
    if io_.input_type == tflite_fb.TensorType.UINT8:
        _warn_if_quantization_disagrees(io_.input_quantization, mean, std)
    custom = None
    if len(io_.roles) == 2:
        anchors = _check_detector_anchors(anchors, io_.num_boxes)
        box_scales = _check_box_scales(box_scales)
        if len(labels) != io_.num_classes:
            raise ValueError(f"labels must have one entry per class of the score output "
                             f"({io_.num_classes}). Received: len(labels)={len(labels)}.")
        custom = _detector_options(metadata_fb, anchors, box_scales, len(labels),
                                   bool(sigmoid_score))
    elif anchors is not None or box_scales is not None:
        raise ValueError("anchors and box_scales describe a 2-output (raw) detector; this model "
                         "has 4 outputs (TFLite_Detection_PostProcess decodes in the model). "
                         "Received: anchors and/or box_scales.")
    if texts["name"] is None:
        texts["name"] = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    if texts["description"] is None:
        texts["description"] = (
            f"Object detector: {io_.height}x{io_.width} RGB input, {len(labels)} classes, "
            + ("non-max suppression in the model." if len(io_.roles) == 4 else
               f"{io_.num_boxes} raw boxes (the client decodes them and runs NMS)."))
    image = _image_metadata(metadata_fb, tflite_fb, io_, mean=mean, std=std, min_max=min_max,
                            color_space="RGB")
    outputs = [_detector_output_metadata(metadata_fb, role, len(io_.roles), score_threshold)
               for role in io_.roles]
    subgraph = metadata_fb.SubGraphMetadataT(inputTensorMetadata=[image],
                                             outputTensorMetadata=outputs)
    if custom is not None:
        subgraph.customMetadata = [custom]
    else:
        group = metadata_fb.TensorGroupT()
        group.name, group.tensorNames = _DETECTION_GROUP, list(NMS_ROLES[:3])
        subgraph.outputTensorGroups = [group]
    return _write_dense(metadata_fb, tflite_fb, texts, subgraph, model_bytes, labels,
                        destination)


def _dense_arguments(path, output_path, labels, what: str, **texts_and_input):
    """The checks and inputs the detector and segmenter writers share: the schemas, the
    texts, the normalization, ``labels`` (required: ``what`` they name), the model's bytes
    and the checked destination."""
    metadata_fb, tflite_fb = _schemas()
    texts = _check_texts(**{k: texts_and_input[k] for k in
                            ("name", "version", "description", "author", "license")})
    mean, std = _check_normalization(texts_and_input["mean"], texts_and_input["std"], "RGB")
    min_max = _check_min_max(texts_and_input["min_max"])
    labels = check_labels(labels)
    if labels is None:
        raise ValueError(f"labels must name {what}. Received: labels=None.")
    model_bytes = _read_tflite(path, "path")
    destination = os.fspath(path if output_path is None else output_path)
    if not os.path.isdir(os.path.dirname(os.path.abspath(destination))):
        raise ValueError("output_path must be in an existing directory. "
                         f"Received: output_path={output_path!r}.")
    return metadata_fb, tflite_fb, texts, mean, std, min_max, labels, model_bytes, destination


def _write_dense(metadata_fb, tflite_fb, texts, subgraph, model_bytes, labels,
                 destination) -> str:
    """The model metadata around ``subgraph``, packed into ``model_bytes`` with the labels
    file, written atomically to ``destination``."""
    metadata = metadata_fb.ModelMetadataT(name=texts["name"], description=texts["description"],
                                          version=texts["version"])
    metadata.author, metadata.license = texts["author"], texts["license"]
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = min_parser_version(metadata)
    builder = _flatbuffers().Builder(1024)
    builder.Finish(metadata.Pack(builder), _METADATA_IDENTIFIER)
    model_bytes = _with_metadata_buffer(model_bytes, bytes(builder.Output()), tflite_fb)
    files = {LABELS_FILE: "\n".join(labels).encode("utf-8")}
    atomic_write(destination, _append_zip(model_bytes, files))
    return destination


class _DetectorIO(NamedTuple):
    """The image input and the role of each output, in output order."""

    height: int
    width: int
    input_type: int
    input_quantization: tuple
    roles: tuple  # NMS_ROLES or RAW_ROLES members, one per model output
    num_boxes: int | None  # raw form: N
    num_classes: int | None  # raw form: C


def _detector_io(model, tflite_fb) -> _DetectorIO:
    """Checks the model against what MediaPipe's ObjectDetector accepts; gives the roles."""
    types = {v: k for k, v in vars(tflite_fb.TensorType).items() if not k.startswith("_")}
    if model.SubgraphsLength() != 1:
        raise ValueError("The model must have one subgraph (MediaPipe needs it). "
                         f"Received: {model.SubgraphsLength()} subgraphs.")
    graph = model.Subgraphs(0)
    if graph.InputsLength() != 1 or graph.OutputsLength() not in (2, 4):
        raise ValueError(
            "An object detector must have one image input and 4 outputs (boxes, classes, "
            "scores, count from TFLite_Detection_PostProcess) or 2 (raw box encodings and "
            f"scores). Received: {graph.InputsLength()} inputs, {graph.OutputsLength()} "
            "outputs.")
    image, shape, _ = _image_input(graph, tflite_fb, "RGB")
    indices = [int(i) for i in graph.OutputsAsNumpy()]
    for i in indices:
        tensor = graph.Tensors(i)
        if tensor.Type() != tflite_fb.TensorType.FLOAT32:
            raise ValueError(
                "The detector's outputs must be float32 (MediaPipe decodes float tensors). "
                f"Received: output {_text(tensor.Name())!r} "
                f"dtype={types.get(tensor.Type(), tensor.Type())}. Convert with "
                "inference_output_type=tf.float32.")
    num_boxes = num_classes = None
    if len(indices) == 4:
        rank = {index: r for r, index in enumerate(sorted(indices))}
        roles = tuple(NMS_ROLES[rank[i]] for i in indices)
    else:
        roles = _raw_roles(model, graph, indices)
        shapes = {role: [int(d) for d in graph.Tensors(i).ShapeAsNumpy()]
                  for role, i in zip(roles, indices, strict=True)}
        location, score = shapes["location"], shapes["score"]
        if (len(location) != 3 or location[0] != 1 or location[2] != 4 or len(score) != 3
                or score[:2] != location[:2]):
            raise ValueError("A raw detector's outputs must be location [1, N, 4] and score "
                             f"[1, N, C]. Received: location {location}, score {score}.")
        num_boxes, num_classes = location[1], score[2]
    quantization = image.Quantization()
    scales = quantization.ScaleAsNumpy() if quantization and quantization.ScaleLength() else []
    zeros = (quantization.ZeroPointAsNumpy()
             if quantization and quantization.ZeroPointLength() else [])
    return _DetectorIO(height=int(shape[1]), width=int(shape[2]), input_type=image.Type(),
                       input_quantization=([float(s) for s in scales], [int(z) for z in zeros]),
                       roles=roles, num_boxes=num_boxes, num_classes=num_classes)


def _raw_roles(model, graph, indices) -> tuple:
    """``location`` / ``score`` per output: by signature output names when the model's
    signature names them so, else by shape (``location`` ends in 4, ``score`` does not)."""
    if model.SignatureDefsLength() == 1:
        signature = model.SignatureDefs(0)
        names = {signature.Outputs(j).TensorIndex(): _text(signature.Outputs(j).Name())
                 for j in range(signature.OutputsLength())}
        roles = tuple(names.get(i) for i in indices)
        if sorted(r for r in roles if r) == sorted(RAW_ROLES):
            return roles
    last = [int(graph.Tensors(i).ShapeAsNumpy()[-1]) if graph.Tensors(i).ShapeLength() else 0
            for i in indices]
    if last.count(4) == 1:
        return tuple("location" if d == 4 else "score" for d in last)
    raise ValueError("Cannot tell the raw detector's location output from its score output: "
                     "name them 'location' and 'score' in the model's signature (as "
                     "keras_mobile.detection.export_detector does). Received: output shapes "
                     f"{[list(graph.Tensors(i).ShapeAsNumpy()) for i in indices]}.")


def _detector_output_metadata(metadata_fb, role, count, score_threshold):
    """The TensorMetadataT of one output, as the official ObjectDetector writer."""
    tensor = metadata_fb.TensorMetadataT(name=role)
    content = metadata_fb.ContentT(
        contentPropertiesType=metadata_fb.ContentProperties.FeatureProperties,
        contentProperties=metadata_fb.FeaturePropertiesT())
    if role == "location":
        content.contentPropertiesType = metadata_fb.ContentProperties.BoundingBoxProperties
        content.contentProperties = metadata_fb.BoundingBoxPropertiesT(
            index=[1, 0, 3, 2], type=metadata_fb.BoundingBoxType.BOUNDARIES,
            coordinateType=metadata_fb.CoordinateType.RATIO)
    if count == 4 and role != NMS_ROLES[3]:
        content.range = metadata_fb.ValueRangeT(min=2, max=2)  # [1, D, ...]: boxes on axis 1
    tensor.content = content
    tensor.description = {
        "location": ("Detected boxes (ymin, xmin, ymax, xmax), normalized to the input size."
                     if count == 4 else
                     "Box encodings (ty, tx, th, tw) of every anchor (DETECTOR_METADATA)."),
        "category": "Class index of each detected box (labels.txt, 0-based).",
        "score": ("Score of each detected box." if count == 4 else
                  "Score of every anchor for every class."),
        "number of detections": "Number of valid detections.",
    }[role]
    label_type = {("category", 4): metadata_fb.AssociatedFileType.TENSOR_VALUE_LABELS,
                  ("score", 2): metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS}.get(
                      (role, count))
    if label_type is not None:
        tensor.associatedFiles = [metadata_fb.AssociatedFileT(
            name=LABELS_FILE, description="Class names, one per line, in class order.",
            type=label_type)]
    if role == "score":
        tensor.stats = metadata_fb.StatsT(min=[0.0], max=[1.0])
        if score_threshold is not None:
            tensor.processUnits = [metadata_fb.ProcessUnitT(
                optionsType=metadata_fb.ProcessUnitOptions.ScoreThresholdingOptions,
                options=metadata_fb.ScoreThresholdingOptionsT(
                    globalScoreThreshold=float(score_threshold)))]
    return tensor


def _check_detector_anchors(anchors, num_boxes):
    if anchors is None:
        raise ValueError("A 2-output (raw) detector needs anchors: [N, 4] (y_center, "
                         "x_center, height, width) normalized to the input size. "
                         "Received: anchors=None.")
    array = np.asarray(anchors, np.float64)
    if array.shape != (num_boxes, 4) or not np.all(np.isfinite(array)) or np.any(
            array[:, 2:] <= 0):
        raise ValueError(f"anchors must be [{num_boxes}, 4] finite (y_center, x_center, "
                         "height, width) with positive sizes, one per box of the location "
                         f"output. Received: anchors of shape {array.shape}.")
    return array


def _check_box_scales(box_scales):
    if box_scales is None or isinstance(box_scales, str) or len(box_scales) != 4 or not all(
            isinstance(s, numbers.Real) and math.isfinite(s) and s > 0 for s in box_scales):
        raise ValueError("A 2-output (raw) detector needs box_scales: 4 positive numbers "
                         "(y_scale, x_scale, h_scale, w_scale), e.g. (10, 10, 5, 5) for "
                         f"SSDLite. Received: box_scales={box_scales!r}.")
    return [float(s) for s in box_scales]


def _detector_options(metadata_fb, anchors, box_scales, num_classes, sigmoid_score):
    """The ``DETECTOR_METADATA`` CustomMetadataT: an ``ObjectDetectorOptions`` flatbuffer
    (``object_detector_metadata_schema.fbs``), as the official writer builds it."""
    from mediapipe.tasks.metadata import object_detector_metadata_schema_py_generated as fb

    schema = fb.FixedAnchorsSchemaT()
    schema.anchors = []
    for y, x, h, w in anchors:
        anchor = fb.FixedAnchorT()
        anchor.yCenter, anchor.xCenter, anchor.height, anchor.width = (
            float(y), float(x), float(h), float(w))
        schema.anchors.append(anchor)
    ssd = fb.SsdAnchorsOptionsT()
    ssd.fixedAnchorsSchema = schema
    decoding = fb.TensorsDecodingOptionsT()
    decoding.numClasses, decoding.numBoxes, decoding.numCoords = (
        num_classes, len(anchors), 4)
    decoding.keypointCoordOffset, decoding.numKeypoints = 0, 0
    # MediaPipe's TensorsToDetectionsCalculator checks num_values_per_keypoint == 2 even
    # without keypoints (it fails to open with 0).
    decoding.numValuesPerKeypoint = 2
    decoding.yScale, decoding.xScale, decoding.hScale, decoding.wScale = box_scales
    decoding.applyExponentialOnBoxSize = True
    decoding.sigmoidScore = sigmoid_score
    options = fb.ObjectDetectorOptionsT()
    options.ssdAnchorsOptions, options.tensorsDecodingOptions = ssd, decoding
    builder = _flatbuffers().Builder(1024)
    builder.Finish(options.Pack(builder), _DETECTOR_OPTIONS_IDENTIFIER)
    custom = metadata_fb.CustomMetadataT()
    custom.name = DETECTOR_METADATA_NAME
    custom.data = np.frombuffer(bytes(builder.Output()), np.uint8)
    return custom


def read_detector_options(path) -> dict | None:
    """The ``DETECTOR_METADATA`` of a raw detector written by :func:`add_detector_metadata`
    as a dict (``anchors`` ``[N, 4]`` y_center, x_center, height, width; ``num_classes``,
    ``num_boxes``, ``num_coords``, ``scales`` (y, x, h, w), ``apply_exponential_on_box_size``,
    ``sigmoid_score``), or None when the model has none."""
    from mediapipe.tasks.metadata import object_detector_metadata_schema_py_generated as fb

    metadata_fb, tflite_fb = _schemas()
    model = tflite_fb.Model.GetRootAs(_read_tflite(path, "path"), 0)
    buffer_index = _metadata_buffer_index(model)
    if buffer_index is None:
        return None
    raw = model.Buffers(buffer_index).DataAsNumpy().tobytes()
    meta = metadata_fb.ModelMetadataT.InitFromObj(metadata_fb.ModelMetadata.GetRootAs(raw, 0))
    for subgraph in meta.subgraphMetadata or []:
        for custom in subgraph.customMetadata or []:
            if _text(custom.name) == DETECTOR_METADATA_NAME:
                data = bytes(np.asarray(custom.data, np.uint8))
                options = fb.ObjectDetectorOptionsT.InitFromObj(
                    fb.ObjectDetectorOptions.GetRootAs(data, 0))
                d = options.tensorsDecodingOptions
                anchors = options.ssdAnchorsOptions.fixedAnchorsSchema.anchors or []
                return {
                    "anchors": np.array([[a.yCenter, a.xCenter, a.height, a.width]
                                         for a in anchors], np.float32).reshape(-1, 4),
                    "num_classes": d.numClasses, "num_boxes": d.numBoxes,
                    "num_coords": d.numCoords,
                    "scales": (d.yScale, d.xScale, d.hScale, d.wScale),
                    "apply_exponential_on_box_size": bool(d.applyExponentialOnBoxSize),
                    "sigmoid_score": bool(d.sigmoidScore)}
    return None


# ---------------------------------------------------------------------------------------
# Image segmenters (MediaPipe ImageSegmenter; specs/dense.md §3)

SEGMENTER_METADATA_NAME = "SEGMENTER_METADATA"  # the custom metadata entry MediaPipe reads
_SEGMENTER_OPTIONS_IDENTIFIER = b"V001"  # image_segmenter_metadata_schema.fbs
SEGMENTER_ACTIVATIONS = ("NONE", "SIGMOID", "SOFTMAX")
SEGMENTATION_OUTPUT = "segmentation_masks"  # the official writer's output name


class _SegmenterIO(NamedTuple):
    height: int
    width: int
    input_type: int
    input_quantization: tuple
    output_shape: tuple  # (1, h, w, C)


def add_segmenter_metadata(path, *, labels, activation: str = "SOFTMAX", name=None,
                           version="1", description=None, author=None, license=None,
                           mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), min_max=(0.0, 255.0),
                           output_path=None) -> str:
    """Writes image-segmenter metadata (and ``labels.txt``) into a ``.tflite`` file.

    MediaPipe's ``ImageSegmenter`` then runs the model: it resizes the image to the input,
    feeds a float32 input ``(pixel - mean) / std`` or a uint8 input the raw pixels, reads
    the one output ``[1, h, w, C]`` as per-class scores, resizes them bilinearly to the
    image and gives a category mask (argmax) and C confidence masks (the scores after
    ``activation``). As the official ``image_segmenter`` writer: the image input, the
    output ``segmentation_masks`` (GRAYSCALE ``ImageProperties``, content range [1, 2],
    the labels as ``TENSOR_AXIS_LABELS``) and the custom metadata ``SEGMENTER_METADATA``
    (an ``ImageSegmenterOptions`` flatbuffer with the activation). Minimum parser
    version 1.5.0 (custom metadata). Existing metadata and associated files are replaced;
    the file is written atomically.

    Args:
        path: a ``.tflite`` segmenter with one ``1 x H x W x 3`` float32 or uint8 input and
            one float32 ``1 x h x w x C`` output (MediaPipe reads the output as float: a
            quantized output must be dequantized in the model).
        labels: the names of the C classes, in channel order.
        activation: what MediaPipe applies to the output for the confidence masks:
            ``"SOFTMAX"`` (the model outputs logits; the default), ``"SIGMOID"`` or
            ``"NONE"`` (it outputs probabilities). The category mask is the argmax
            either way. SOFTMAX needs C > 1.
        name, version, description, author, license, mean, std, min_max: as
            :func:`add_metadata` (keras_mobile segmenters take raw [0, 255] pixels:
            mean 0, std 1).
        output_path: where to write; defaults to ``path`` (in place).

    Returns:
        The path written.
    """
    activation = check_segmenter_activation(activation)
    metadata_fb, tflite_fb, texts, mean, std, min_max, labels, model_bytes, destination = \
        _dense_arguments(path, output_path, labels, "the segmenter's classes (MediaPipe "
                         "reports them)", name=name, version=version, description=description,
                         author=author, license=license, mean=mean, std=std, min_max=min_max)
    io_ = _segmenter_io(tflite_fb.Model.GetRootAs(model_bytes, 0), tflite_fb)
    classes = io_.output_shape[-1]
    if len(labels) != classes:
        raise ValueError(f"labels must have one entry per class of the model's output "
                         f"({classes}). Received: len(labels)={len(labels)}.")
    if activation == "SOFTMAX" and classes < 2:
        raise ValueError("activation='SOFTMAX' needs 2 or more classes (MediaPipe refuses it "
                         "on one channel); a one-channel mask takes 'SIGMOID' or 'NONE'. "
                         f"Received: an output of {classes} channel.")
    if io_.input_type == tflite_fb.TensorType.UINT8:
        _warn_if_quantization_disagrees(io_.input_quantization, mean, std)
    if texts["name"] is None:
        texts["name"] = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    if texts["description"] is None:
        texts["description"] = (
            f"Image segmenter: {io_.height}x{io_.width} RGB input, {classes} classes, "
            f"{io_.output_shape[1]}x{io_.output_shape[2]} masks.")
    image = _image_metadata(metadata_fb, tflite_fb, io_, mean=mean, std=std, min_max=min_max,
                            color_space="RGB")
    masks = metadata_fb.TensorMetadataT(name=SEGMENTATION_OUTPUT)
    masks.description = {
        "SOFTMAX": f"Logits of the {classes} classes per pixel (softmax gives probabilities).",
        "SIGMOID": f"Logits of the {classes} classes per pixel (sigmoid gives probabilities).",
        "NONE": f"Scores of the {classes} classes per pixel.",
    }[activation]
    content = metadata_fb.ContentT(
        contentPropertiesType=metadata_fb.ContentProperties.ImageProperties,
        contentProperties=metadata_fb.ImagePropertiesT(
            colorSpace=metadata_fb.ColorSpaceType.GRAYSCALE))
    content.range = metadata_fb.ValueRangeT(min=1, max=2)  # [1, h, w, C]: the mask axes
    masks.content = content
    masks.associatedFiles = [metadata_fb.AssociatedFileT(
        name=LABELS_FILE, description="Class names, one per line, in channel order.",
        type=metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS)]
    options = _segmenter_options(activation)
    subgraph = metadata_fb.SubGraphMetadataT(inputTensorMetadata=[image],
                                             outputTensorMetadata=[masks])
    custom = metadata_fb.CustomMetadataT()
    custom.name = SEGMENTER_METADATA_NAME
    custom.data = np.frombuffer(options, np.uint8)
    subgraph.customMetadata = [custom]
    return _write_dense(metadata_fb, tflite_fb, texts, subgraph, model_bytes, labels,
                        destination)


def read_segmenter_options(path) -> dict | None:
    """The ``SEGMENTER_METADATA`` of a segmenter written by :func:`add_segmenter_metadata`
    as a dict (``activation``: ``"NONE"``, ``"SIGMOID"`` or ``"SOFTMAX"``), or None when
    the model has none."""
    metadata_fb, tflite_fb = _schemas()
    model = tflite_fb.Model.GetRootAs(_read_tflite(path, "path"), 0)
    buffer_index = _metadata_buffer_index(model)
    if buffer_index is None:
        return None
    raw = model.Buffers(buffer_index).DataAsNumpy().tobytes()
    meta = metadata_fb.ModelMetadataT.InitFromObj(metadata_fb.ModelMetadata.GetRootAs(raw, 0))
    for subgraph in meta.subgraphMetadata or []:
        activation = _segmenter_activation(subgraph)
        if activation is not None:
            return {"activation": activation}
    return None


def check_segmenter_activation(activation) -> str:
    """``activation`` as the metadata writes it (upper case), checked: NONE, SIGMOID or
    SOFTMAX (MediaPipe's ``SegmenterOptions.Activation``)."""
    if not isinstance(activation, str) or activation.upper() not in SEGMENTER_ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(SEGMENTER_ACTIVATIONS)}. "
                         f"Received: activation={activation!r}.")
    return activation.upper()


def _segmenter_options(activation: str) -> bytes:
    """The ``ImageSegmenterOptions`` flatbuffer (``image_segmenter_metadata_schema.fbs``),
    as the official writer builds it."""
    from mediapipe.tasks.metadata import image_segmenter_metadata_schema_py_generated as fb

    options = fb.ImageSegmenterOptionsT()
    options.activation = getattr(fb.Activation, activation)
    builder = _flatbuffers().Builder(64)
    builder.Finish(options.Pack(builder), _SEGMENTER_OPTIONS_IDENTIFIER)
    return bytes(builder.Output())


def _segmenter_activation(subgraph) -> str | None:
    """The activation in a SubGraphMetadataT's ``SEGMENTER_METADATA``, or None."""
    for custom in getattr(subgraph, "customMetadata", None) or []:
        if _text(custom.name) == SEGMENTER_METADATA_NAME:
            from mediapipe.tasks.metadata import (
                image_segmenter_metadata_schema_py_generated as fb,
            )

            data = bytes(np.asarray(custom.data, np.uint8))
            value = fb.ImageSegmenterOptions.GetRootAs(data, 0).Activation()
            names = {v: k for k, v in vars(fb.Activation).items() if not k.startswith("_")}
            return names.get(value, str(value))
    return None


def _segmenter_io(model, tflite_fb) -> _SegmenterIO:
    """Checks the model against what MediaPipe's ImageSegmenter accepts."""
    types = {v: k for k, v in vars(tflite_fb.TensorType).items() if not k.startswith("_")}
    if model.SubgraphsLength() != 1:
        raise ValueError("The model must have one subgraph (MediaPipe needs it). "
                         f"Received: {model.SubgraphsLength()} subgraphs.")
    graph = model.Subgraphs(0)
    if graph.InputsLength() != 1 or graph.OutputsLength() != 1:
        raise ValueError("An image segmenter must have one image input and one output (the "
                         f"per-pixel class scores). Received: {graph.InputsLength()} inputs, "
                         f"{graph.OutputsLength()} outputs.")
    image, shape, _ = _image_input(graph, tflite_fb, "RGB")
    masks = graph.Tensors(graph.Outputs(0))
    out_shape = tuple(int(d) for d in masks.ShapeAsNumpy()) if masks.ShapeLength() else ()
    if len(out_shape) != 4 or out_shape[0] != 1 or min(out_shape) < 1:
        raise ValueError("The segmenter's output must be 1 x height x width x classes (static). "
                         f"Received: output shape={list(out_shape)}.")
    if masks.Type() != tflite_fb.TensorType.FLOAT32:
        raise ValueError(
            "The segmenter's output must be float32: MediaPipe's ImageSegmenter reads it as "
            "float, whatever its type. Received: output "
            f"dtype={types.get(masks.Type(), masks.Type())}. Convert an integer model with "
            "inference_output_type=tf.float32 (a DEQUANTIZE ends the graph).")
    quantization = image.Quantization()
    scales = quantization.ScaleAsNumpy() if quantization and quantization.ScaleLength() else []
    zeros = (quantization.ZeroPointAsNumpy()
             if quantization and quantization.ZeroPointLength() else [])
    return _SegmenterIO(height=int(shape[1]), width=int(shape[2]), input_type=image.Type(),
                        input_quantization=([float(s) for s in scales], [int(z) for z in zeros]),
                        output_shape=out_shape)


def min_parser_version(metadata) -> str:
    """The oldest metadata parser that reads ``metadata`` (a ``ModelMetadataT``).

    Each schema member added after 1.0.0 raises the minimum to the version that added it
    (the rule of MediaPipe's ``metadata_version.cc``); plain image classifier metadata
    needs ``"1.0.0"``.
    """
    metadata_fb, _ = _schemas()
    file_type, options = metadata_fb.AssociatedFileType, metadata_fb.ProcessUnitOptions
    unit_versions = {options.BertTokenizerOptions: (1, 1, 0),
                     options.SentencePieceTokenizerOptions: (1, 1, 0),
                     options.RegexTokenizerOptions: (1, 2, 1)}
    found = [(1, 0, 0)]

    def files(entries):
        for entry in entries or ():
            found.append({file_type.VOCABULARY: (1, 0, 1),
                          file_type.SCANN_INDEX_FILE: (1, 4, 0)}.get(entry.type, (1, 0, 0)))
            if entry.version is not None:
                found.append((1, 4, 1))

    def units(entries):
        found.extend(unit_versions.get(unit.optionsType, (1, 0, 0)) for unit in entries or ())

    files(metadata.associatedFiles)
    for subgraph in metadata.subgraphMetadata or ():
        files(subgraph.associatedFiles)
        for tensor in (subgraph.inputTensorMetadata or []) + (subgraph.outputTensorMetadata
                                                              or []):
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            if tensor.content is not None and tensor.content.contentPropertiesType == (
                    metadata_fb.ContentProperties.AudioProperties):
                found.append((1, 3, 0))
        for process_units in (subgraph.inputProcessUnits, subgraph.outputProcessUnits):
            if process_units is not None:
                found.append((1, 1, 0))
                units(process_units)
        if subgraph.inputTensorGroups is not None or subgraph.outputTensorGroups is not None:
            found.append((1, 2, 0))
        if subgraph.customMetadata is not None:
            found.append((1, 5, 0))
    return ".".join(str(part) for part in max(found))


# ---------------------------------------------------------------------------------------
# Argument checks


def _check_texts(**texts):
    for key, value in texts.items():
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{key} must be a string or None. Received: {key}={value!r}.")
    if texts["version"] is None:
        raise TypeError("version must be a string. Received: version=None.")
    return texts


def _check_color_space(color_space):
    if not isinstance(color_space, str) or color_space.upper() not in ("RGB", "GRAYSCALE"):
        raise ValueError(f'color_space must be "RGB" or "GRAYSCALE". '
                         f"Received: color_space={color_space!r}.")
    return color_space.upper()


def _check_normalization(mean, std, color_space):
    values = {}
    for key, value in (("mean", mean), ("std", std)):
        items = [value] if isinstance(value, numbers.Real) else value
        if (isinstance(items, str) or not isinstance(items, Sequence | np.ndarray)
                or len(items) not in (1, 3)
                or not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in items)):
            raise ValueError(f"{key} must be 1 or 3 finite numbers (one per RGB channel). "
                             f"Received: {key}={value!r}.")
        values[key] = [float(v) for v in items]
    if min(values["std"]) <= 0:
        raise ValueError(f"std must be > 0 (pixels are divided by it). Received: std={std!r}.")
    if len(values["mean"]) != len(values["std"]):  # the clients want equal lengths
        values = {k: v * 3 if len(v) == 1 else v for k, v in values.items()}
    if color_space == "GRAYSCALE":
        if any(len(set(v)) > 1 for v in values.values()):
            raise ValueError("A GRAYSCALE input takes one mean and one std. "
                             f"Received: mean={mean!r}, std={std!r}.")
        values = {k: v[:1] for k, v in values.items()}
    return values["mean"], values["std"]


def _check_min_max(min_max):
    if (isinstance(min_max, str) or not isinstance(min_max, Sequence) or len(min_max) != 2
            or not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in min_max)
            or not min_max[0] < min_max[1]):
        raise ValueError("min_max must be two finite numbers (lowest, highest raw pixel value) "
                         f"with lowest < highest. Received: min_max={min_max!r}.")
    return float(min_max[0]), float(min_max[1])


def check_labels(labels):
    """``labels`` as ``add_metadata`` writes them (a list), or None; checked first.

    ``labels.txt`` holds one label per line and is read back with
    ``str.splitlines``, so a label must be a non-blank string that ``splitlines``
    keeps whole: none of ``\\n \\r \\x0b \\x0c \\x1c \\x1d \\x1e \\x85 \\u2028 \\u2029``.
    A refusal names the first bad labels by index and repr, and counts the rest.
    """
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence | np.ndarray):
        raise TypeError("labels must be a list of class names (strings) or None. "
                        f"Received: labels={_short_repr(labels)}.")
    labels = list(labels)
    if not labels:
        raise ValueError("labels must be a non-empty list, one name per class. "
                         "Received: labels=[].")
    bad = [i for i, label in enumerate(labels)
           if not isinstance(label, str) or not label.strip() or label.splitlines() != [label]]
    if bad:
        shown = ", ".join(f"labels[{i}]={_short_repr(labels[i])}" for i in bad[:_SHOWN])
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise ValueError(
            "labels must be non-empty strings without line breaks, one per class (they are "
            "written one per line; a line break is any character str.splitlines splits on). "
            f"Received {len(bad)} bad of {len(labels)}: {shown}{more}.")
    return labels


_SHOWN = 5  # bad labels named in a refusal


def _short_repr(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _read_tflite(path, key):
    if not isinstance(path, str | os.PathLike) or not os.path.isfile(path):
        raise ValueError(f"{key} must be an existing .tflite file. Received: {key}={path!r}.")
    with open(path, "rb") as f:
        data = f.read()
    if not is_tflite(data):
        raise ValueError(f"{key} must be a TFLite flatbuffer (file identifier "
                         f"{TFLITE_IDENTIFIER.decode()}, found {data[4:8]!r}). "
                         f"Received: {key}={path!r}.")
    return data


def _classifier_io(model, tflite_fb, color_space) -> _ClassifierIO:
    """Checks the model against what image classifier clients accept."""
    types = {v: k for k, v in vars(tflite_fb.TensorType).items() if not k.startswith("_")}
    if model.SubgraphsLength() != 1:
        raise ValueError("The model must have one subgraph (MediaPipe and the Task Library "
                         f"need it). Received: {model.SubgraphsLength()} subgraphs.")
    graph = model.Subgraphs(0)
    if graph.InputsLength() != 1 or graph.OutputsLength() != 1:
        raise ValueError("The model must have one image input and one score output. Received: "
                         f"{graph.InputsLength()} inputs, {graph.OutputsLength()} outputs.")
    image, shape, channels = _image_input(graph, tflite_fb, color_space)
    scores = graph.Tensors(graph.Outputs(0))
    allowed = (tflite_fb.TensorType.FLOAT32, tflite_fb.TensorType.UINT8)
    if scores.Type() not in allowed:
        raise ValueError("The model output must be float32 or uint8 (MediaPipe and the Task "
                         "Library refuse other types). Received: output "
                         f"dtype={types.get(scores.Type(), scores.Type())}. For an integer "
                         "model convert with inference_output_type=tf.uint8.")
    out_shape = list(scores.ShapeAsNumpy()) if scores.ShapeLength() else []
    if not out_shape or out_shape[-1] < 1 or any(d != 1 for d in out_shape[:-1]):
        raise ValueError("The model output must be 1 x classes. "
                         f"Received: output shape={out_shape}.")
    quantization = image.Quantization()
    scales = quantization.ScaleAsNumpy() if quantization and quantization.ScaleLength() else []
    zeros = (quantization.ZeroPointAsNumpy()
             if quantization and quantization.ZeroPointLength() else [])
    return _ClassifierIO(
        input_name=_text(image.Name()), input_type=image.Type(), height=int(shape[1]),
        width=int(shape[2]), channels=channels,
        input_quantization=([float(s) for s in scales], [int(z) for z in zeros]),
        output_name=_text(scores.Name()), output_type=scores.Type(),
        classes=int(out_shape[-1]), softmax=_ends_in_softmax(model, graph, graph.Outputs(0),
                                                             tflite_fb))


def _image_input(graph, tflite_fb, color_space):
    """``(tensor, shape, channels)`` of the single image input, checked against what the
    clients accept: ``1 x H x W x C``, float32 or uint8 (int8 is refused)."""
    types = {v: k for k, v in vars(tflite_fb.TensorType).items() if not k.startswith("_")}
    image = graph.Tensors(graph.Inputs(0))
    shape = list(image.ShapeAsNumpy()) if image.ShapeLength() else []
    channels = 3 if color_space == "RGB" else 1
    if len(shape) != 4 or shape[0] != 1 or shape[3] != channels or min(shape) <= 0:
        raise ValueError(f"The model input must be 1 x height x width x {channels} "
                         f"({color_space}, batch 1, static). Received: input shape={shape}. "
                         "Convert with a static input, e.g. keras.Input(shape, batch_size=1).")
    if image.Type() not in (tflite_fb.TensorType.FLOAT32, tflite_fb.TensorType.UINT8):
        raise ValueError("The model input must be float32 or uint8 (MediaPipe and the Task "
                         "Library refuse other types). Received: input "
                         f"dtype={types.get(image.Type(), image.Type())}. For an integer "
                         "model convert with inference_input_type=tf.uint8.")
    return image, shape, channels


def _ends_in_softmax(model, graph, tensor_index, tflite_fb) -> bool:
    """Whether the output comes from SOFTMAX (through QUANTIZE/DEQUANTIZE/RESHAPE)."""
    ops = tflite_fb.BuiltinOperator
    passthrough = (ops.QUANTIZE, ops.DEQUANTIZE, ops.RESHAPE)
    producers = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        for j in range(op.OutputsLength()):
            producers[op.Outputs(j)] = op
    while tensor_index in producers:
        op = producers[tensor_index]
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == ops.SOFTMAX:
            return True
        if builtin not in passthrough or op.InputsLength() < 1:
            return False
        tensor_index = op.Inputs(0)
    return False


def _warn_if_quantization_disagrees(quantization, mean, std):
    """A uint8 input gets raw pixels p; the graph sees scale * (p - zero_point), which should
    equal the documented (p - mean) / std."""
    scales, zeros = quantization
    if len(scales) != 1 or len(zeros) != 1:
        return
    scale, zero = scales[0], zeros[0]
    if any(abs(scale * s - 1) > 0.02 or abs(zero - m) > 1 for m, s in zip(mean, std, strict=True)):
        warnings.warn(f"The uint8 input is quantized with scale={scale:g}, zero_point={zero}, "
                      f"so raw pixels p reach the graph as {scale:g} * (p - {zero}), not as "
                      f"(p - mean) / std with mean={mean}, std={std}. Clients feed raw pixels "
                      "to uint8 models; calibrate the input with pixel values covering [0, 255].",
                      stacklevel=3)


# ---------------------------------------------------------------------------------------
# Building and writing


def _model_metadata(metadata_fb, tflite_fb, io_, texts, *, labels, mean, std, min_max,
                    color_space):
    """The ModelMetadataT of an image classifier, as the official ImageClassifier writer."""
    image = _image_metadata(metadata_fb, tflite_fb, io_, mean=mean, std=std, min_max=min_max,
                            color_space=color_space)
    score = metadata_fb.TensorMetadataT(name="score")
    quantized = io_.output_type == tflite_fb.TensorType.UINT8
    score.description = (
        ("Softmax probabilities" if io_.softmax else "Scores") + f" of the {io_.classes} labels"
        + (", quantized to uint8 (clients dequantize them)." if quantized else "."))
    score.content = metadata_fb.ContentT(
        contentPropertiesType=metadata_fb.ContentProperties.FeatureProperties,
        contentProperties=metadata_fb.FeaturePropertiesT())
    if quantized:
        score.stats = metadata_fb.StatsT(min=[0.0], max=[255.0])
    elif io_.softmax:
        score.stats = metadata_fb.StatsT(min=[0.0], max=[1.0])
    if labels is not None:
        score.associatedFiles = [metadata_fb.AssociatedFileT(
            name=LABELS_FILE, description="Class names, one per line, in output order.",
            type=metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS)]

    metadata = metadata_fb.ModelMetadataT(name=texts["name"], description=texts["description"],
                                          version=texts["version"])
    metadata.author, metadata.license = texts["author"], texts["license"]
    metadata.subgraphMetadata = [metadata_fb.SubGraphMetadataT(
        inputTensorMetadata=[image], outputTensorMetadata=[score])]
    return metadata


def _image_metadata(metadata_fb, tflite_fb, io_, *, mean, std, min_max, color_space):
    """The TensorMetadataT of the image input (``io_``: height, width, input_type)."""
    is_uint8 = io_.input_type == tflite_fb.TensorType.UINT8
    image = metadata_fb.TensorMetadataT(name="image")
    image.description = (
        f"Input image, {io_.height}x{io_.width} {color_space}: "
        + ("raw uint8 pixels (the input quantization maps them)." if is_uint8 else
           f"float pixels in [{min_max[0]:g}, {min_max[1]:g}] normalized as "
           f"(pixel - mean) / std."))
    properties = metadata_fb.ImagePropertiesT(
        colorSpace=getattr(metadata_fb.ColorSpaceType, color_space),
        defaultSize=metadata_fb.ImageSizeT(width=io_.width, height=io_.height))
    image.content = metadata_fb.ContentT(
        contentPropertiesType=metadata_fb.ContentProperties.ImageProperties,
        contentProperties=properties)
    image.processUnits = [metadata_fb.ProcessUnitT(
        optionsType=metadata_fb.ProcessUnitOptions.NormalizationOptions,
        options=metadata_fb.NormalizationOptionsT(mean=list(mean), std=list(std)))]
    if is_uint8:
        image.stats = metadata_fb.StatsT(min=[0.0], max=[255.0])
    else:
        pairs = list(zip(mean, std, strict=True))
        image.stats = metadata_fb.StatsT(min=[(min_max[0] - m) / s for m, s in pairs],
                                         max=[(min_max[1] - m) / s for m, s in pairs])
    return image


def _with_metadata_buffer(model_bytes, metadata_bytes, tflite_fb) -> bytes:
    """The model flatbuffer (without any appended archive) with ``TFLITE_METADATA`` set."""
    model = tflite_fb.ModelT.InitFromObj(tflite_fb.Model.GetRootAs(model_bytes, 0))
    buffers = model.buffers or []
    if any((b.offset or 0) > 1 for b in buffers):
        raise ValueError("The model keeps its buffers outside the flatbuffer (a model over "
                         "2 GB); adding metadata to such a file is not supported.")
    entry = tflite_fb.BufferT()
    entry.data = np.frombuffer(metadata_bytes, np.uint8)
    kept, replaced = [], False
    for item in model.metadata or []:
        if _text(item.name) != METADATA_NAME:
            kept.append(item)
        elif not replaced:  # reuse its buffer; drop duplicate entries, if any
            buffers[item.buffer] = entry
            kept.append(item)
            replaced = True
    if not replaced:
        buffers.append(entry)
        item = tflite_fb.MetadataT()
        item.name, item.buffer = METADATA_NAME, len(buffers) - 1
        kept.append(item)
    model.metadata = kept
    model.buffers = buffers
    return write_model(model, len(model_bytes) + len(metadata_bytes))


def _append_zip(model_bytes, files) -> bytes:
    """Appends ``files`` as a ZIP archive, as the official populator (zipfile mode "a" on
    the model file: offsets count from the start of the file)."""
    if not files:
        return model_bytes
    stream = io.BytesIO(model_bytes)
    with zipfile.ZipFile(stream, "a") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    result = stream.getvalue()
    if result[:len(model_bytes)] != model_bytes or _archive_members(result) != files:
        raise RuntimeError("Appending the associated files did not give a readable archive.")
    return result


def _archive_members(data) -> dict:
    """Members of the ZIP archive appended to a model, {} if there is none."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}


def _metadata_buffer_index(model):
    for i in range(model.MetadataLength()):
        if _text(model.Metadata(i).Name()) == METADATA_NAME:
            return model.Metadata(i).Buffer()
    return None


def _flatbuffers():
    import flatbuffers

    return flatbuffers


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _floats(values):
    return None if values is None else [float(v) for v in values]
