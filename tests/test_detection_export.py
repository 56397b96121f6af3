"""Detector decoding (keras_mobile.detection.postprocess) and TFLite export for MediaPipe
(keras_mobile.detection.export, keras_mobile.tflite.metadata.add_detector_metadata).

An untrained detector's detections are noise, so the detector here (SSDLite on a
MobileNetV2 0.35 backbone at 320 px, 3 classes: the smallest valid one) has its heads
forced, as ``specs/dense.md`` §3's probe did (a RetinaNet test forces its sigmoid head the
same way). Every head predicts background (logit 8) except on the two coarsest levels:

* level 5 (2 x 2 map), anchor 0: "dog" (logit 4) and a 60 x 60 box at each of the 4
  locations: four detections of equal score that do not overlap;
* level 6 (1 x 1 map, centered at 160, 160): anchor 0 "cat" (logit 8), box 100 x 100;
  anchor 1 "cat" (logit 6), box 110 x 110 (IoU 0.83 with the first: class-aware NMS
  suppresses it); anchor 2 "bird" (logit 5), box 100 x 120 (IoU 0.83 with the cat, a
  different class: class-aware NMS keeps it, class-agnostic NMS does not).

Six detections per image in Keras (decode + class-aware NMS), compared with LiteRT and
MediaPipe's ObjectDetector for both exported forms and float32, float16 and int8.

A second detector adds, on level 6 anchor 3, a 40 x 60 box in the top-right corner whose
class depends on the image: its class logits are a ridge fit on the head's features
(random kernel, BatchNorm statistics from the images) that gives image i the class i % 3.
It checks that the image reaches the model unchanged (MediaPipe's resize and input
normalization) in float32 only: features of a random deep net are chaotic under
quantization (float16 already flips a class), so the quantized files are checked on the
constant detector and the uint8 input's quantization is checked to be the identity.
"""

import keras
import numpy as np
import pytest
from mediapipe.tasks.python import BaseOptions, vision
from mediapipe.tasks.python.vision.core.image import Image, ImageFormat

import keras_mobile
from keras_mobile import detection
from keras_mobile.data.samples import recalibrate_batchnorm, synthetic_images
from keras_mobile.detection import box_coder, postprocess
from keras_mobile.detection.export import (
    DetectionTolerance,
    export_detector,
    measure_detection_parity,
    tflite_detections,
)
from keras_mobile.tflite import ConversionError, inspect, runtime
from keras_mobile.tflite import metadata as md
from keras_mobile.tflite.inspect import parse_subgraph, read_model

LABELS = ["cat", "dog", "bird"]
SIZE = 320
FIXED = [  # (class, (ymin, xmin, ymax, xmax), score) kept by class-aware NMS, every image
    (0, (110, 110, 210, 210), 0.998995),  # softmax([0, 8, 0, 0])
    (2, (110, 100, 210, 220), 0.980187),  # softmax([0, 0, 0, 5])
    *[(1, (y, x, y + 60, x + 60), 0.947915) for y in (50, 210) for x in (50, 210)],
]
VARYING_BOX = (20, 240, 60, 300)  # level 6 anchor 3; class i % 3 on image i
CHAOS_FREE = DetectionTolerance(min_agreement=1.0, min_iou=0.95, top_k=10)


def _encode(box, anchor):
    return np.asarray(box_coder.encode([box], [anchor]))[0]


def _forced_detector():
    keras.utils.set_random_seed(0)
    backbone = keras_mobile.MobileNetV2(include_top=False, weights=None, alpha=0.35,
                                        input_shape=(SIZE, SIZE, 3))
    det = detection.SSDLite(backbone, num_classes=len(LABELS), backbone_weights=None)
    anchors = det.anchors
    per_level = [6 * h * w for h, w in detection.anchors.feature_sizes(det)]
    centered = lambda y, x, h, w: (y - h / 2, x - w / 2, y + h / 2, x + w / 2)  # noqa: E731
    for level in range(1, 7):
        first = sum(per_level[:level - 1])  # the level's first location
        logits = np.zeros((6, len(LABELS) + 1))
        logits[:, 0] = 8.0
        boxes = np.zeros((6, 4))
        if level == 5:
            logits[0] = [0, 0, 4, 0]
            boxes[0] = _encode(centered(80, 80, 60, 60), anchors[first])
        if level == 6:
            logits[:3] = [[0, 8, 0, 0], [0, 6, 0, 0], [0, 0, 0, 5]]
            for a, size in enumerate([(100, 100), (110, 110), (100, 120)]):
                boxes[a] = _encode(centered(160, 160, *size), anchors[first + a])
            boxes[3] = _encode(VARYING_BOX, anchors[first + 3])  # background until fitted
        for branch, bias in (("cls", logits), ("box", boxes)):
            conv = det.get_layer(f"head{level}_{branch}_conv")
            conv.kernel.assign(np.zeros(conv.kernel.shape))
            conv.bias.assign(bias.reshape(-1))
    return det


def _image_dependent(detector, images):
    """A copy of ``detector`` whose level 6 anchor 3 gives image i the class i % 3 (class
    logits: a ridge fit on unit-scale features of the images)."""
    det = postprocess.Detector.from_config(detector.get_config())
    det.set_weights(detector.get_weights())
    rng = np.random.default_rng(0)
    depthwise = det.get_layer("head6_cls_dw_conv")
    depthwise.kernel.assign(rng.normal(0.0, 1.0, depthwise.kernel.shape))
    recalibrate_batchnorm(det, images)
    features = keras.Model(det.input, det.get_layer("head6_cls_dw_act").output)
    f = features.predict(images, verbose=0).reshape(len(images), -1)
    f = np.concatenate([f, np.ones((len(f), 1))], axis=1)
    targets = np.full((len(images), len(LABELS) + 1), -4.0)
    targets[:, 0] = 0.0
    targets[np.arange(len(images)), 1 + np.arange(len(images)) % len(LABELS)] = 6.0
    weights = np.linalg.solve(f.T @ f + np.eye(f.shape[1]), f.T @ targets)
    head = det.get_layer("head6_cls_conv")
    kernel, bias = head.kernel.numpy(), head.bias.numpy()
    columns = slice(3 * (len(LABELS) + 1), 4 * (len(LABELS) + 1))
    kernel[0, 0, :, columns], bias[columns] = weights[:-1], weights[-1]
    head.kernel.assign(kernel)
    head.bias.assign(bias)
    return det


@pytest.fixture(scope="module")
def images():
    # Whole pixel values: MediaPipe gets the same image as uint8.
    return np.round(synthetic_images(12, (SIZE, SIZE), seed=3))


@pytest.fixture(scope="module")
def detector():
    return _forced_detector()


@pytest.fixture(scope="module")
def image_detector(detector, images):
    return _image_dependent(detector, images)


@pytest.fixture(scope="module")
def keras_found(detector, images):
    return detector.predict_boxes(images, image_size=None)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, detector, image_detector, images):
    """(form, mode[, "image"]) -> ConversionReport, converted once (about 5 s each)."""
    folder = tmp_path_factory.mktemp("detectors")
    cache = {}

    def get(form, mode, which="constant"):
        if (form, mode, which) not in cache:
            model = detector if which == "constant" else image_detector
            cache[form, mode, which] = export_detector(
                model, str(folder / f"{which}_{form}_{mode}.tflite"), labels=LABELS,
                form=form, mode=mode, representative_data=images if mode == "int8" else None,
                check_data=images, num_check_samples=len(images), tolerance=CHAOS_FREE)
        return cache[form, mode, which]

    return get


FIXED_PAIRS = [(c, box) for c, box, _ in FIXED]


def _expected(image_index):
    """The image-dependent detector's detections on image ``image_index``."""
    return [*FIXED_PAIRS, (image_index % len(LABELS), VARYING_BOX)]


def _assert_same(found, expected, *, pixels, scale=(1.0, 1.0)):
    """``found`` Detections equal ``expected`` (class, box) pairs, in any order (equal
    scores tie), boxes within ``pixels`` after scaling expected boxes by (sy, sx)."""
    assert len(found.scores) == len(expected), (found, expected)
    sy, sx = scale
    todo = [(c, np.array(box) * [sy, sx, sy, sx]) for c, box in expected]
    for cls, box in zip(found.classes, found.boxes, strict=True):
        errors = [np.abs(box - b).max() if c == cls else np.inf for c, b in todo]
        best = int(np.argmin(errors))
        assert errors[best] <= pixels, (cls, box, todo)
        todo.pop(best)


def _mediapipe(path, image, labels=LABELS, **options):
    """MediaPipe ObjectDetector's detections as Detections (boxes in image pixels), the
    class from the category name (``Category.index`` is None once labels exist)."""
    opts = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=path),
                                        **options)
    with vision.ObjectDetector.create_from_options(opts) as detector:
        result = detector.detect(Image(image_format=ImageFormat.SRGB,
                                       data=np.ascontiguousarray(image, np.uint8)))
    boxes, scores, classes = [], [], []
    for d in result.detections:
        b = d.bounding_box
        boxes.append([b.origin_y, b.origin_x, b.origin_y + b.height, b.origin_x + b.width])
        (category,) = d.categories
        assert category.index is None
        scores.append(category.score)
        classes.append(labels.index(category.category_name))
    return postprocess.Detections(np.array(boxes, np.float32).reshape(-1, 4),
                                  np.array(scores, np.float32), np.array(classes, np.int64))


# --- decode + NMS --------------------------------------------------------------------------


def test_keras_detections_are_the_forced_ones(detector, image_detector, keras_found,
                                              images):
    assert len(keras_found) == len(images)
    for found in keras_found:
        _assert_same(found, FIXED_PAIRS, pixels=1e-3)
        by_box = {tuple(np.round(b).astype(int)): s for b, s in zip(found.boxes, found.scores,
                                                                     strict=True)}
        assert by_box == pytest.approx({box: score for _, box, score in FIXED}, abs=1e-5)
        assert list(found.scores) == sorted(found.scores, reverse=True)
    for i, found in enumerate(image_detector.predict_boxes(images, image_size=None)):
        _assert_same(found, _expected(i), pixels=1e-3)
        assert found.scores[found.boxes[:, 0].round() == VARYING_BOX[0]][0] > 0.99
    # Class-agnostic NMS (MediaPipe's for raw models) drops the bird under the cat.
    agnostic = detector.predict_boxes(images[:1], image_size=None, class_agnostic=True)[0]
    _assert_same(agnostic, [e for e in FIXED_PAIRS if e[0] != 2], pixels=1e-3)


def test_decode_by_hand():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 1, 1]],
                       np.float32)
    zero = np.zeros((4, 4), np.float32)
    # sigmoid, 2 classes: anchors 0 and 1 coincide (IoU 1); 2 is apart; 3 below threshold.
    logits = np.array([[2.0, -9], [1.0, 1.5], [-9, 0.0], [-9, -9]], np.float32)
    (found,) = postprocess.decode(zero, logits, anchors, activation="sigmoid",
                                  scales=(1, 1, 1, 1), score_threshold=0.05,
                                  iou_threshold=0.5, max_detections=10)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    # Class 0: anchor 0 (0.88) suppresses anchor 1 (0.73); class 1: anchor 1 (0.82), then
    # anchor 2 (0.5): class-aware, so anchor 1's class 1 survives anchor 0's class 0.
    np.testing.assert_allclose(found.scores, sigmoid(np.array([2.0, 1.5, 0.0])), rtol=1e-6)
    assert found.classes.tolist() == [0, 1, 1]
    np.testing.assert_allclose(found.boxes, anchors[[0, 1, 2]])
    (agnostic,) = postprocess.decode(zero, logits, anchors, activation="sigmoid",
                                     scales=(1, 1, 1, 1), score_threshold=0.05,
                                     iou_threshold=0.5, class_agnostic=True)
    assert agnostic.classes.tolist() == [0, 1]
    (top,) = postprocess.decode(zero, logits, anchors, activation="sigmoid",
                                scales=(1, 1, 1, 1), score_threshold=0.05, max_detections=1)
    assert top.classes.tolist() == [0]
    # softmax: column 0 is the background and is never a class.
    soft = np.array([[5.0, 0, 0], [0, 5, 0], [0, 0, 5], [5, 0, 0]], np.float32)
    (found,) = postprocess.decode(zero, soft, anchors, score_threshold=0.5)
    assert found.classes.tolist() == [0, 1]  # anchors 1, 2 (equal scores: index order)
    np.testing.assert_allclose(found.boxes, anchors[[1, 2]])
    # Encodings (ty, tx, th, tw) / scales; boxes clipped to image_size when given.
    shift = np.array([[10.0, 0, 0, 0]], np.float32)  # ty = 10: one anchor height down (y 10)
    (moved,) = postprocess.decode(shift, [[0.0, 5.0]], anchors[:1], score_threshold=0.5)
    np.testing.assert_allclose(moved.boxes, [[10, 0, 20, 10]], atol=1e-5)
    (clipped,) = postprocess.decode(shift, [[0.0, 5.0]], anchors[:1], score_threshold=0.5,
                                    image_size=(15, 15))
    np.testing.assert_allclose(clipped.boxes, [[10, 0, 15, 10]], atol=1e-5)
    assert postprocess.decode(zero[None].repeat(2, 0), soft[None].repeat(2, 0), anchors,
                              score_threshold=0.99)[1].boxes.shape == (0, 4)


@pytest.mark.parametrize("kwargs, match", [
    ({"activation": "relu"}, "activation must be"),
    ({"scales": (1, 1, 1)}, "scales must be 4 positive"),
    ({"iou_threshold": 1.5}, r"iou_threshold must be in \[0, 1\]"),
    ({"max_detections": 0}, "max_detections must be a positive int"),
])
def test_decode_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        postprocess.decode(np.zeros((1, 4)), np.zeros((1, 2)), np.ones((1, 4)), **kwargs)
    with pytest.raises(ValueError, match="same N"):
        postprocess.decode(np.zeros((2, 4)), np.zeros((3, 2)), np.ones((2, 4)))


def test_detector_is_a_functional_model(detector, tmp_path):
    assert isinstance(detector, postprocess.Detector)
    assert (detector.activation, detector.box_scales) == ("softmax", (10.0, 10.0, 5.0, 5.0))
    assert (detector.score_threshold, detector.iou_threshold, detector.max_detections) == (
        0.02, 0.45, 200)
    assert detector.num_classes == 3 and detector.image_size == (SIZE, SIZE)
    np.testing.assert_array_equal(detector.anchors, detection.anchors_for(detector))
    plain = keras.Model(detector.inputs, detector.outputs)
    assert keras_mobile.profile(detector).macs == keras_mobile.profile(plain).macs
    config = detector.get_config()
    assert {"layers", "input_layers", "output_layers"} <= set(config)
    assert (config["activation"], config["box_stds"]) == ("softmax", [0.1, 0.1, 0.2, 0.2])
    clone = postprocess.Detector.from_config(config)
    assert isinstance(clone, postprocess.Detector) and clone.max_detections == 200
    clone.set_weights(detector.get_weights())
    x = np.round(synthetic_images(1, (SIZE, SIZE), seed=8))
    np.testing.assert_array_equal(clone.predict(x, verbose=0)["class_logits"],
                                  detector.predict(x, verbose=0)["class_logits"])
    with pytest.raises(ValueError, match=r"box_stds must be 4 positive numbers"):
        postprocess.Detector(detector.inputs, detector.outputs, box_stds=(0.1, 0.1, 0.2, 0))
    with pytest.raises(ValueError, match="activation must be"):
        postprocess.Detector(detector.inputs, detector.outputs, activation="relu")
    retina = detection.RetinaNet("MobileNetV3Small", num_classes=2, backbone_weights=None,
                                 input_shape=(64, 64, 3))
    assert (retina.activation, retina.box_scales, retina.score_threshold,
            retina.num_classes) == ("sigmoid", (1.0, 1.0, 1.0, 1.0), 0.05, 2)


# --- TFLite: the 4-output form (TFLite_Detection_PostProcess) ---------------------------


@pytest.mark.parametrize("mode", ["float32", "float16", "int8"])
def test_nms_form_matches_keras_in_litert_and_mediapipe(exported, mode, images, keras_found):
    report = exported("nms", mode)
    parity = report.parity
    assert parity.agreement == 1.0 and parity.keras_detections == 6 * len(images), parity
    assert parity.min_iou > {"float32": 0.9999, "float16": 0.998, "int8": 0.98}[mode], parity
    assert parity.max_score_diff < {"float32": 1e-4, "float16": 1e-3, "int8": 0.01}[mode]
    assert report.ops["TFLite_Detection_PostProcess"] == 1 and report.has_metadata
    it = runtime.interpreter(report.path)
    assert it.get_input_details()[0]["dtype"] == (np.uint8 if mode == "int8" else np.float32)
    pixels = 0.5 if mode == "float32" else 1.0
    for found, expected in zip(tflite_detections(it, images[:4], form="nms"), keras_found,
                               strict=False):
        _assert_same(found, FIXED_PAIRS, pixels=pixels)
        np.testing.assert_allclose(np.sort(found.scores), np.sort(expected.scores), atol=0.01)
    # MediaPipe: boxes in whole pixels of the image, classes by name.
    found = _mediapipe(report.path, images[0], score_threshold=0.02)
    _assert_same(found, FIXED_PAIRS, pixels=pixels + 1)
    np.testing.assert_allclose(np.sort(found.scores), np.sort(keras_found[0].scores), atol=0.01)
    # A 240 x 480 image is stretched to 320 x 320 and the boxes mapped back.
    wide = np.round(synthetic_images(1, (240, 480), seed=5)[0])
    found = _mediapipe(report.path, wide, score_threshold=0.02)
    _assert_same(found, FIXED_PAIRS, pixels=pixels + 1, scale=(240 / SIZE, 480 / SIZE))


@pytest.mark.parametrize("form", ["nms", "raw"])
def test_the_image_reaches_the_model(exported, image_detector, form, images):
    """float32, the image-dependent detector: MediaPipe (its resize, normalization) gives
    image i the class i % 3, as Keras does."""
    report = exported(form, "float32", "image")
    assert report.parity.agreement == 1.0
    assert report.parity.keras_detections == 7 * len(images)
    keras_found = image_detector.predict_boxes(images[:3], image_size=None,
                                               class_agnostic=form == "raw")
    for i in range(3):
        found = _mediapipe(report.path, images[i], score_threshold=0.02)
        expected = [e for e in _expected(i) if form == "nms" or e[0] != 2 or e[1] == VARYING_BOX]
        _assert_same(found, expected, pixels=1.5)
        _assert_same(keras_found[i], expected, pixels=1e-3)


def test_nms_metadata_roles(exported):
    path = exported("nms", "float32").path
    meta = md.read_metadata(path)
    assert meta["min_parser_version"] == "1.2.0" and meta["labels"] == LABELS
    assert (meta["mean"], meta["std"]) == ([0.0] * 3, [1.0] * 3)
    it = runtime.interpreter(path)
    indices = [d["index"] for d in it.get_output_details()]
    # Roles follow the tensor indices (the op's port order), not the output order.
    roles = dict(zip(sorted(indices), md.NMS_ROLES, strict=True))
    assert meta["output_names"] == [roles[i] for i in indices]
    assert meta["output_names"] != list(md.NMS_ROLES)  # the converter reorders them
    metadata_fb, _ = md._schemas()
    model = md.schema().Model.GetRootAs(open(path, "rb").read(), 0)
    raw = model.Buffers(md._metadata_buffer_index(model)).DataAsNumpy().tobytes()
    subgraph = metadata_fb.ModelMetadataT.InitFromObj(
        metadata_fb.ModelMetadata.GetRootAs(raw, 0)).subgraphMetadata[0]
    tensors = {t.name.decode(): t for t in subgraph.outputTensorMetadata}
    box = tensors["location"].content.contentProperties
    assert list(box.index) == [1, 0, 3, 2]
    assert (box.type, box.coordinateType) == (metadata_fb.BoundingBoxType.BOUNDARIES,
                                              metadata_fb.CoordinateType.RATIO)
    (labels,) = tensors["category"].associatedFiles
    assert labels.type == metadata_fb.AssociatedFileType.TENSOR_VALUE_LABELS
    (threshold,) = tensors["score"].processUnits
    assert threshold.options.globalScoreThreshold == pytest.approx(0.02)
    (group,) = subgraph.outputTensorGroups
    assert [n.decode() for n in group.tensorNames] == ["location", "category", "score"]
    assert subgraph.customMetadata is None


def test_int8_body_is_integer_but_the_postprocessing(exported):
    report = exported("nms", "int8")
    info = inspect(report.path)
    assert info.inputs[0].dtype == "UINT8"
    scale, zero_point = info.inputs[0].quantization
    assert abs(scale - 1.0) < 1e-3 and zero_point == 0  # raw pixels, as MediaPipe feeds them
    assert all(o.dtype == "FLOAT32" for o in info.outputs)
    assert info.custom_ops == ["TFLite_Detection_PostProcess"]
    # Float: the softmax of the int8 class logits (XNNPACK has no int8 SOFTMAX: it computes
    # in float inside the XNNPACK partition) and the post-processing.
    floats = [name for _, name in info.float_ops]
    assert sorted(floats) == ["DEQUANTIZE", "DEQUANTIZE", "SOFTMAX",
                              "TFLite_Detection_PostProcess"]
    assert report.xnnpack_partitions == 1
    graph = parse_subgraph(read_model(report.path)[0])
    (op,) = [o for o in graph.ops if o.name == "TFLite_Detection_PostProcess"]
    producers = {t.index: o.name for o in graph.ops for t in o.outputs}
    assert [producers.get(t.index, "constant") for t in op.inputs] == [
        "DEQUANTIZE", "SOFTMAX", "constant"]  # encodings: int8 -> float; scores; anchors
    assert report.size_bytes < 0.4 * exported("nms", "float32").size_bytes


# --- TFLite: the raw 2-output form (DETECTOR_METADATA) ---------------------------------


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_raw_form_matches_keras_in_litert_and_mediapipe(exported, detector, mode, images,
                                                        keras_found):
    report = exported("raw", mode)
    assert report.parity.agreement == 1.0, report.parity
    assert report.parity.keras_detections == 6 * len(images)
    assert "TFLite_Detection_PostProcess" not in report.ops
    info = inspect(report.path)
    assert sorted(o.shape for o in info.outputs) == [(1, 3234, 3), (1, 3234, 4)]
    if mode == "int8":  # the class softmax computes in float, in the XNNPACK partition
        assert sorted(name for _, name in info.float_ops) == ["DEQUANTIZE", "QUANTIZE",
                                                               "SOFTMAX"]
        assert info.inputs[0].dtype == "UINT8" and report.xnnpack_partitions == 1
    pixels = 0.5 if mode == "float32" else 1.0
    it = runtime.interpreter(report.path)
    for found in tflite_detections(it, images[:2], form="raw", anchors=detector.anchors,
                                   **detector.decode_settings(image_size=None)):
        _assert_same(found, FIXED_PAIRS, pixels=pixels)
    # MediaPipe decodes and runs its own class-agnostic NMS: the bird under the cat goes.
    # Python's ObjectDetectorOptions always sends score_threshold (default 0.0, which
    # overrides the metadata's 0.02 and returns every anchor): pass it.
    agnostic = detector.predict_boxes(images[:1], image_size=None, class_agnostic=True)[0]
    found = _mediapipe(report.path, images[0], score_threshold=0.02)
    expected = [(c, tuple(b)) for c, b in zip(agnostic.classes, agnostic.boxes, strict=True)]
    assert len(expected) == 5
    _assert_same(found, expected, pixels=pixels + 1)
    np.testing.assert_allclose(np.sort(found.scores), np.sort(agnostic.scores), atol=0.01)


def test_raw_metadata(exported, detector):
    path = exported("raw", "float32").path
    meta = md.read_metadata(path)
    assert meta["min_parser_version"] == "1.5.0" and meta["labels"] == LABELS
    assert sorted(meta["output_names"]) == ["location", "score"]
    options = md.read_detector_options(path)
    np.testing.assert_allclose(options["anchors"], detection.to_center_normalized(
        detector.anchors, (SIZE, SIZE)), atol=1e-7)
    assert options["scales"] == (10.0, 10.0, 5.0, 5.0)
    assert (options["num_classes"], options["num_boxes"], options["num_coords"]) == (3, 3234, 4)
    assert options["apply_exponential_on_box_size"] and not options["sigmoid_score"]
    assert md.read_detector_options(exported("nms", "float32").path) is None


def test_retinanet_sigmoid_nms_form(tmp_path):
    """RetinaNet: sigmoid scores, no background column (the op's label offset 0). Forced:
    one anchor shape of every location says class 1 with a box shrunk to e^-3 of it (no
    two overlap by IoU 0.5): 8^2 + 4^2 + 2^2 + 1 + 1 = 86 detections at 64 px."""
    keras.utils.set_random_seed(0)
    det = detection.RetinaNet("MobileNetV3Small", num_classes=2, backbone_weights=None,
                              input_shape=(64, 64, 3))
    cls, box = det.get_layer("head_cls_conv"), det.get_layer("head_box_conv")
    logits, encodings = np.full((9, 2), -10.0), np.zeros((9, 4))
    logits[4, 1], encodings[4, 2:] = 3.0, -3.0
    for conv, bias in ((cls, logits), (box, encodings)):
        conv.kernel.assign(np.zeros(conv.kernel.shape))
        conv.bias.assign(bias.reshape(-1))
    images = np.round(synthetic_images(2, (64, 64), seed=3))
    (expected, _) = det.predict_boxes(images, image_size=None, max_detections=100)
    assert len(expected.scores) == 86 and set(expected.classes.tolist()) == {1}
    report = export_detector(det, str(tmp_path / "r.tflite"), labels=["x", "y"],
                             max_detections=100, check_data=images, tolerance=CHAOS_FREE)
    assert report.parity.agreement == 1.0 and report.ops["LOGISTIC"] == 1
    (found,) = tflite_detections(runtime.interpreter(report.path), images[:1], form="nms")
    _assert_same(found, list(zip(expected.classes, expected.boxes, strict=True)), pixels=1e-3)
    np.testing.assert_allclose(found.scores, expected.scores, atol=1e-6)
    mediapipe = _mediapipe(report.path, images[0], ["x", "y"], score_threshold=0.05)
    assert len(mediapipe.scores) == 86 and set(mediapipe.classes.tolist()) == {1}


# --- refusals ------------------------------------------------------------------------------


def test_failed_parity_writes_nothing(tmp_path, detector, images):
    path = tmp_path / "d.tflite"
    path.write_bytes(b"old")
    with pytest.raises(ConversionError, match="does not detect what the Keras model detects"):
        export_detector(detector, str(path), labels=LABELS, check_data=images[:2],
                        tolerance=DetectionTolerance(min_iou=1.01))  # no IoU reaches it
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tflite"]


def test_parity_sees_a_different_model(exported, detector, images):
    other = postprocess.Detector.from_config(detector.get_config())
    other.set_weights(detector.get_weights())
    head = other.get_layer("head5_box_conv")
    head.bias.assign(head.bias.numpy() + 2.0)  # moves the four dog boxes
    parity = measure_detection_parity(other, exported("nms", "float32").path, images[:2],
                                      tolerance=CHAOS_FREE)
    # The cat and the bird still agree, the four dogs do not.
    assert parity.recall == pytest.approx(2 / 6) and parity.precision == pytest.approx(2 / 6)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"labels": ["a", "b"]}, ValueError, "labels must name the model's 3 classes"),
    ({"labels": LABELS, "form": "yolo"}, ValueError, "form must be"),
    ({"labels": LABELS, "mode": "int8_percentile"}, ValueError, "mode must be one of"),
    ({"labels": LABELS, "mode": "int8"}, ValueError, "needs representative_data"),
    ({"labels": LABELS, "iou_threshold": 2.0}, ValueError, "iou_threshold must be in"),
])
def test_export_refuses_bad_arguments(tmp_path, detector, kwargs, error, match):
    with pytest.raises(error, match=match):
        export_detector(detector, str(tmp_path / "d.tflite"), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_plain_model(tmp_path, detector):
    plain = keras.Model(detector.inputs, detector.outputs)
    with pytest.raises(ValueError, match="must be a keras_mobile.detection.Detector"):
        export_detector(plain, str(tmp_path / "d.tflite"), labels=LABELS)


def test_detector_metadata_refuses_what_mediapipe_refuses(exported, tmp_path):
    raw = exported("raw", "float32").path
    with pytest.raises(ValueError, match="needs anchors"):
        md.add_detector_metadata(raw, labels=LABELS, output_path=str(tmp_path / "a.tflite"))
    options = md.read_detector_options(raw)
    with pytest.raises(ValueError, match="one entry per class"):
        md.add_detector_metadata(raw, labels=["a"], anchors=options["anchors"],
                                 box_scales=options["scales"],
                                 output_path=str(tmp_path / "b.tflite"))
    with pytest.raises(ValueError, match=r"anchors must be \[3234, 4\]"):
        md.add_detector_metadata(raw, labels=LABELS, anchors=options["anchors"][:5],
                                 box_scales=options["scales"],
                                 output_path=str(tmp_path / "c.tflite"))
    with pytest.raises(ValueError, match="describe a 2-output"):
        md.add_detector_metadata(exported("nms", "float32").path, labels=LABELS,
                                 anchors=options["anchors"],
                                 output_path=str(tmp_path / "d.tflite"))
    assert list(tmp_path.iterdir()) == []


# --- one export vocabulary: keras_mobile.tflite.convert / keras_mobile.export, QAT ----------


def _float_ops(path):
    return sorted(name for _, name in inspect(path).float_ops)


def test_tflite_convert_hands_a_detector_to_export_detector(tmp_path, detector, images,
                                                            keras_found):
    """``keras_mobile.tflite.convert(det, ...)``, as for a classifier: the MediaPipe file
    with NMS, its labels from ``metadata``; float32 and post-training int8 through
    ``keras_mobile.export.export``."""
    report = keras_mobile.tflite.convert(detector, str(tmp_path / "f.tflite"),
                                         metadata={"labels": LABELS}, check_data=images,
                                         num_check_samples=len(images), tolerance=CHAOS_FREE)
    assert report.ops["TFLite_Detection_PostProcess"] == 1
    assert report.parity.agreement == 1.0 and report.parity.keras_detections == 6 * len(images)
    assert md.read_metadata(report.path)["labels"] == LABELS
    int8 = keras_mobile.export.export(detector, str(tmp_path / "i.tflite"), mode="int8",
                                      representative_data=images, check_data=images,
                                      metadata={"labels": LABELS}, tolerance=CHAOS_FREE)
    assert int8.parity.agreement == 1.0 and int8.input_type == "uint8"
    assert _float_ops(int8.path) == ["DEQUANTIZE", "DEQUANTIZE", "SOFTMAX",
                                     "TFLite_Detection_PostProcess"]
    found = tflite_detections(runtime.interpreter(int8.path), images[:2], form="nms")
    _assert_same(found[0], FIXED_PAIRS, pixels=1.0)


@pytest.mark.parametrize("kwargs, match", [
    ({}, r"needs metadata=\{'labels'"),
    ({"metadata": {"labels": LABELS}, "tolerance": keras_mobile.tflite.Tolerance()},
     "pass a keras_mobile.detection.DetectionTolerance"),
    ({"metadata": {"labels": LABELS}, "mode": "int8", "representative_data": np.zeros(
        (1, SIZE, SIZE, 3)), "inference_input_type": "float32"}, "takes uint8 for "
                                                                "inference_input_type"),
    ({"metadata": {"labels": LABELS}, "allow_select_tf_ops": True}, "does not apply"),
])
def test_tflite_convert_refuses_what_a_detector_cannot_take(tmp_path, detector, kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_mobile.tflite.convert(detector, str(tmp_path / "d.tflite"), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_quantization_aware_detector_exports_its_learned_ranges(tmp_path, detector, images,
                                                                keras_found):
    """quantize_detector: the tf_keras QAT twin keeps the anchors and decoding, decodes the
    same detections, and exports as ``qat_int8`` (float ops: the post-processing only);
    ``int8_percentile`` wraps the percentile-calibrated graph the same way."""
    qat = detection.quantize_detector(detector, representative_data=images)
    assert isinstance(qat, detection.QuantizedDetector)
    np.testing.assert_array_equal(qat.anchors, detector.anchors)
    assert qat.decode_settings() == detector.decode_settings()
    assert qat.num_classes == 3 and qat.image_size == (SIZE, SIZE)
    outputs = qat(images[:2], training=False)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "box_encodings": (2, 3234, 4), "class_logits": (2, 3234, 4)}
    # The same classes. Boxes move: the forced encodings span a wide range, and one 8-bit
    # step of it moves a 60-pixel box's edges 8 pixels (a trained detector's QAT accuracy
    # is tests/test_detection_training.py's).
    for found in qat.predict_boxes(images[:2], image_size=None):
        assert sorted(found.classes.tolist()) == sorted(c for c, _ in FIXED_PAIRS)
    with pytest.raises(ValueError, match="mode='qat_int8'"):
        keras_mobile.export.export(detector, str(tmp_path / "x.tflite"), mode="qat_int8",
                                   representative_data=images, metadata={"labels": LABELS})
    with pytest.raises(ValueError, match="converts with the ranges it learned"):
        export_detector(qat, str(tmp_path / "x.tflite"), labels=LABELS, mode="float32")
    for mode, model in (("qat_int8", qat), ("int8_percentile", detector)):
        report = keras_mobile.export.export(
            model, str(tmp_path / f"{mode}.tflite"), mode=mode, representative_data=images,
            check_data=images, metadata={"labels": LABELS}, tolerance=CHAOS_FREE)
        assert report.parity.agreement == 1.0, (mode, report.parity)
        assert report.parity.keras_detections == 6 * len(images)
        assert _float_ops(report.path) == ["DEQUANTIZE", "DEQUANTIZE", "SOFTMAX",
                                           "TFLite_Detection_PostProcess"], mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8_percentile.tflite",
                                                          "qat_int8.tflite"]
