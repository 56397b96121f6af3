"""Segmenter export for MediaPipe (keras_mobile.segmentation.export, .quantize,
keras_mobile.tflite.metadata.add_segmenter_metadata): every export mode, parity in LiteRT,
MediaPipe's ImageSegmenter on the files, the quantization-aware twin, refusals.

The segmenter is trained-like without training: an LR-ASPP on MobileNetV3Small (64 px,
4 classes) whose stride-8 classifier (``decode_low_classifier``) is a least-squares fit,
on its own features, of the colour classes of synthetic scenes (flat red, green and blue
shapes on a grey gradient: class 0 background, 1-3 the hue). A linear probe: its masks
follow the colours (about 75% of the pixels right, where a random head gives noise that
quantization flips), with class boundaries at the shapes' edges, as a trained model's.
Measured with it (16 check scenes): float32 100% pixel agreement, int8 99.3%; on LR-ASPP,
DeepLabV3 and PSPNet trained on such scenes (128 px, 89-99% pixel accuracy): int8
98.97-99.89%, float16 >= 99.99%, dynamic >= 99.94%, QAT int8 against its twin 99.90%.
"""

import keras
import numpy as np
import pytest
from mediapipe.tasks.python import BaseOptions, vision
from mediapipe.tasks.python.vision.core.image import Image, ImageFormat

import keras_mobile
from keras_mobile import bridge, segmentation
from keras_mobile.data.samples import recalibrate_batchnorm
from keras_mobile.export import EXPORT_MODES
from keras_mobile.segmentation import export as seg_export
from keras_mobile.segmentation.export import (
    SegmentationParity,
    SegmentationTolerance,
    export_segmenter,
    measure_segmentation_parity,
    tflite_logits,
)
from keras_mobile.segmentation.quantize import QuantizedSegmenter, quantize_segmenter
from keras_mobile.segmentation.segmenting import Segmenting
from keras_mobile.tflite import ConversionError, inspect
from keras_mobile.tflite import metadata as md

SIZE = 64
LABELS = ["background", "red", "green", "blue"]
HUES = np.array([[200, 60, 50], [60, 190, 70], [50, 80, 210]], np.float32)


def _scenes(count, seed):
    """``count`` scenes (whole-pixel float32 images, uint8 class masks): a grey gradient
    with 2-4 ellipses or rectangles of a jittered red, green or blue."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1)
    images = np.empty((count, SIZE, SIZE, 3), np.float32)
    masks = np.zeros((count, SIZE, SIZE), np.uint8)
    for i in range(count):
        g0, g1 = rng.uniform(60, 190, 2)
        angle = rng.uniform(0, np.pi)
        t = np.cos(angle) * cols + np.sin(angle) * rows
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        image = (g0 * (1 - t) + g1 * t)[..., None].repeat(3, -1)
        for _ in range(rng.integers(2, 5)):
            c = int(rng.integers(1, len(LABELS)))
            colour = np.clip(HUES[c - 1] + rng.normal(0, 25, 3), 0, 255)
            cy, cx = rng.uniform(0.1, 0.9, 2)
            ry, rx = rng.uniform(0.12, 0.35, 2)
            if rng.integers(2):
                shape = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
            else:
                shape = (np.abs(rows - cy) <= ry) & (np.abs(cols - cx) <= rx)
            image = np.where(shape[..., None], colour, image)
            masks[i][shape] = c
        images[i] = np.round(np.clip(image + rng.normal(0, 4, image.shape), 0, 255))
    return images, masks


def _probe(images, masks):
    """The LR-ASPP whose stride-8 classifier is a ridge fit of the scenes' colour classes."""
    keras.utils.set_random_seed(0)
    seg = segmentation.LRASPP("MobileNetV3Small", num_classes=len(LABELS),
                              input_shape=(SIZE, SIZE, 3), backbone_weights=None)
    recalibrate_batchnorm(seg, images)
    low = seg.get_layer("decode_low_classifier")
    features = keras.Model(seg.inputs, low.input).predict(images, verbose=0)
    n, h, w, c = features.shape
    step = SIZE // h
    shares = np.eye(len(LABELS))[masks].reshape(n, h, step, w, step, -1).mean((2, 4))
    x = np.concatenate([features.reshape(-1, c), np.ones((n * h * w, 1))], axis=1)
    fit = np.linalg.solve(x.T @ x + np.eye(c + 1), x.T @ (8 * shares - 4).reshape(-1, 4))
    low.set_weights([fit[:-1][None, None].astype(np.float32), fit[-1].astype(np.float32)])
    return seg


@pytest.fixture(scope="module")
def scenes():
    return _scenes(32, seed=0)


@pytest.fixture(scope="module")
def check():
    return _scenes(8, seed=99)


@pytest.fixture(scope="module")
def segmenter(scenes):
    return _probe(*scenes)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, segmenter, scenes, check):
    """mode -> ConversionReport of ``keras_mobile.export.export`` with the default gates,
    converted once (3-6 s each; int8_percentile ~15 s)."""
    folder = tmp_path_factory.mktemp("segmenters")
    cache = {}

    def get(mode):
        if mode not in cache:
            cache[mode] = keras_mobile.export.export(
                segmenter, str(folder / f"seg_{mode}.tflite"), mode,
                representative_data=scenes[0] if "int8" in mode else None,
                check_data=check[0], num_check_samples=len(check[0]),
                metadata={"labels": LABELS})
        return cache[mode]

    return get


def _mediapipe(path, image):
    """MediaPipe ImageSegmenter: (category mask [H, W] uint8, confidence masks [H, W, C])."""
    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=path),
                                           output_confidence_masks=True,
                                           output_category_mask=True)
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        assert segmenter.labels == LABELS
        result = segmenter.segment(Image(image_format=ImageFormat.SRGB,
                                         data=np.ascontiguousarray(image, np.uint8)))
        # Copies, read before the segmenter closes: numpy_view() shows memory the task
        # owns (read after close() it held other values in about half the runs).
        category = np.array(result.category_mask.numpy_view()).reshape(SIZE, SIZE)
        confidence = np.stack([np.array(m.numpy_view()).reshape(SIZE, SIZE)
                               for m in result.confidence_masks], axis=-1)
    return category, confidence


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --- the model under test ---------------------------------------------------------------


def test_the_probe_segments_by_colour(segmenter, check):
    masks = segmenter.predict_masks(check[0])
    assert masks.shape == (8, SIZE, SIZE) and masks.dtype == np.uint8
    assert set(np.unique(masks)) == {0, 1, 2, 3}
    assert (masks == check[1]).mean() > 0.65  # a random head: ~0.3
    assert segmenter.inference_model().output_shape == (None, SIZE, SIZE, len(LABELS))


# --- every export mode: one logits output, integer body, parity, metadata -----------------


@pytest.mark.parametrize("mode", [m for m in EXPORT_MODES if m != "qat_int8"])
def test_every_export_mode(exported, mode):
    report = exported(mode)
    integer = "int8" in mode
    assert report.mode == ("int8" if integer else mode)
    info = inspect(report.path)
    (image,) = info.inputs
    (logits,) = info.outputs
    assert logits.shape == (1, SIZE, SIZE, len(LABELS)) and logits.dtype == "FLOAT32"
    assert "SOFTMAX" not in report.ops  # MediaPipe applies it (SEGMENTER_METADATA)
    assert report.max_rank <= 4 and report.dynamic_tensors == 0
    if mode != "dynamic":  # XNNPACK takes dynamic-range (hybrid) ops in part: 9 partitions
        assert report.xnnpack_partitions == 1
    if integer:
        assert image.dtype == "UINT8" and info.float_ops == []
        scale, zero_point = image.quantization
        assert abs(scale - 1.0) < 1e-3 and zero_point == 0  # raw pixels, as MediaPipe feeds
        # Not "fully": the uint8 -> int8 QUANTIZE of the input is XNNPACK's only refusal.
        assert report.ops["DEQUANTIZE"] == 1
    else:
        assert image.dtype == "FLOAT32" and report.fully_delegated == (mode != "dynamic")
    parity = report.parity
    assert isinstance(parity, SegmentationParity) and parity.keras_classes == 4
    assert parity.pixel_agreement >= {"float32": 1.0, "float16": 0.999,
                                      "dynamic": 0.995}.get(mode, 0.98), parity
    meta = md.read_metadata(report.path)
    assert meta["labels"] == LABELS and meta["segmenter_activation"] == "SOFTMAX"
    assert meta["min_parser_version"] == "1.5.0"
    assert meta["output_names"] == ["segmentation_masks"]
    assert (meta["mean"], meta["std"]) == ([0.0] * 3, [1.0] * 3)
    assert md.read_segmenter_options(report.path) == {"activation": "SOFTMAX"}


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_mediapipe_segments_as_keras(exported, segmenter, check, mode):
    """MediaPipe's category mask is the argmax of the file's logits (images at the input
    size: no resize), its confidence masks their softmax; both follow Keras."""
    path = exported(mode).path
    keras_masks = segmenter.predict_masks(check[0][:3])
    logits = tflite_logits(path, check[0][:3])
    agreement = []
    for i in range(3):
        category, confidence = _mediapipe(path, check[0][i])
        np.testing.assert_array_equal(category, logits[i].argmax(-1))
        np.testing.assert_allclose(confidence, _softmax(logits[i]), atol=1e-5)
        agreement.append((category == keras_masks[i]).mean())
    # Measured: float32 1.0; int8 0.965-0.980 per image (0.987 over the 8 check scenes).
    assert min(agreement) >= (0.9999 if mode == "float32" else 0.95), agreement


# --- quantization-aware twin ------------------------------------------------------------


def test_quantization_aware_twin_keeps_the_outputs(tmp_path):
    """A DeepLabV3 with its auxiliary head: the twin has the same outputs dict (so it
    trains with the aux loss), its inference model drops the head."""
    keras.utils.set_random_seed(0)
    seg = segmentation.DeepLabV3("MobileNetV3Small", num_classes=3, input_shape=(SIZE, SIZE, 3),
                                 backbone_weights=None, dilations=(1, 2))
    qat = quantize_segmenter(seg)
    assert isinstance(qat, QuantizedSegmenter) and isinstance(qat, Segmenting)
    assert bridge.is_quantization_aware(qat)
    assert (qat.num_classes, qat.image_size, qat.has_auxiliary_head) == (3, (SIZE, SIZE), True)
    out = qat(np.zeros((2, SIZE, SIZE, 3), np.float32), training=False)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "logits": (2, SIZE, SIZE, 3), "aux_logits": (2, SIZE, SIZE, 3)}
    inference = qat.inference_model()
    assert len(inference.outputs) == 1 and inference.output_shape == (None, SIZE, SIZE, 3)
    # The input quantizer takes raw pixels, uncalibrated too: a uint8 input of scale 1.
    (pixels,) = [layer for layer in qat.layers if type(layer).__name__ == "QuantizeLayer"]
    assert sorted(float(w.numpy()) for w in pixels.weights if "_m" in w.name) == [0.0, 255.0]
    assert qat.predict_masks(np.zeros((SIZE, SIZE, 3))).shape == (1, SIZE, SIZE)
    with pytest.raises(ValueError, match="converts with the ranges it learned"):
        export_segmenter(qat, str(tmp_path / "q.tflite"), labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="mode='qat_int8' converts a quantization-aware"):
        keras_mobile.export.export(seg, str(tmp_path / "q.tflite"), "qat_int8",
                                   representative_data=np.zeros((1, SIZE, SIZE, 3)),
                                   metadata={"labels": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="must be a keras_mobile.segmentation.Segmenter"):
        quantize_segmenter(inference)
    assert list(tmp_path.iterdir()) == []


def test_qat_int8_file_matches_the_twin(tmp_path, segmenter, scenes, check):
    qat = quantize_segmenter(segmenter, representative_data=scenes[0])
    assert (qat.predict_masks(check[0]) == check[1]).mean() > 0.6  # still the probe
    report = keras_mobile.export.export(qat, str(tmp_path / "qat.tflite"), "qat_int8",
                                        representative_data=scenes[0], check_data=check[0],
                                        metadata={"labels": LABELS})
    info = inspect(report.path)
    assert info.float_ops == [] and report.xnnpack_partitions == 1
    assert info.inputs[0].dtype == "UINT8" and info.inputs[0].quantization == (1.0, 0)
    # The gate compared the file with the twin's fake-quantized masks (measured 0.99+).
    assert report.parity.pixel_agreement >= 0.98, report.parity
    again = measure_segmentation_parity(qat, report.path, check[0])
    assert again.pixel_agreement == report.parity.pixel_agreement
    category, _ = _mediapipe(report.path, check[0][0])
    assert (category == qat.predict_masks(check[0][:1])[0]).mean() >= 0.95  # measured 0.979


# --- refusals and the atomic write --------------------------------------------------------


def test_failed_parity_writes_nothing(tmp_path, segmenter, check):
    path = tmp_path / "s.tflite"
    path.write_bytes(b"old")
    with pytest.raises(ConversionError, match="does not segment as the Keras model does"):
        export_segmenter(segmenter, str(path), labels=LABELS, check_data=check[0][:2],
                         tolerance=SegmentationTolerance(min_pixel_agreement=1.01))
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tflite"]


def test_an_int8_input_that_is_not_raw_pixels_is_refused(exported, tmp_path):
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as tflite_fb

    with open(exported("int8").path, "rb") as f:
        model = tflite_fb.ModelT.InitFromObj(tflite_fb.Model.GetRootAs(f.read(), 0))
    graph = model.subgraphs[0]
    graph.tensors[graph.inputs[0]].quantization.scale = np.array([0.5], np.float32)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"TFL3")
    with pytest.raises(ConversionError, match="quantized with scale 0.5, zero point 0, not 1"):
        seg_export._check_graph(bytes(builder.Output()), "int8", str(tmp_path / "s.tflite"))


IMAGES = np.zeros((2, SIZE, SIZE, 3), np.float32)


@pytest.mark.parametrize("call, match", [
    (lambda s, p: export_segmenter(s, p, labels=LABELS[:3]),
     "labels must name the model's 4 classes"),
    (lambda s, p: export_segmenter(s, p, labels=None), "labels must name the model's 4"),
    (lambda s, p: export_segmenter(s, p, labels=LABELS, activation="RELU"),
     "activation must be one of NONE, SIGMOID, SOFTMAX"),
    (lambda s, p: export_segmenter(s, p, labels=LABELS, mode="int8"),
     "needs representative_data"),
    (lambda s, p: export_segmenter(s, p, labels=LABELS, mode="int8_percentile"),
     "mode must be one of"),
    (lambda s, p: export_segmenter(s, p, labels=LABELS, metadata={"colour": "x"}),
     "metadata must be a dict of name"),
    (lambda s, p: keras_mobile.tflite.convert(s, p), r"needs metadata=\{'labels'"),
    (lambda s, p: keras_mobile.tflite.convert(
        s, p, mode="int8", representative_data=IMAGES, inference_input_type="float32",
        metadata={"labels": LABELS}), "takes uint8 for inference_input_type"),
    (lambda s, p: keras_mobile.tflite.convert(
        s, p, mode="int8", representative_data=IMAGES, inference_output_type="uint8",
        metadata={"labels": LABELS}), "takes float32 for inference_output_type"),
    (lambda s, p: keras_mobile.tflite.convert(s, p, tolerance=keras_mobile.tflite.Tolerance(),
                                              metadata={"labels": LABELS}),
     "pass a keras_mobile.segmentation.SegmentationTolerance"),
    (lambda s, p: keras_mobile.export.export(s, p, "int8", representative_data=IMAGES,
                                             allow_select_tf_ops=True,
                                             metadata={"labels": LABELS}), "does not apply"),
    (lambda s, p: export_segmenter(s.inference_model(), p, labels=LABELS),
     "model must be a keras_mobile.segmentation.Segmenter"),
])
def test_refusals_before_converting(tmp_path, segmenter, call, match):
    with pytest.raises(ValueError, match=match) as error:
        call(segmenter, str(tmp_path / "s.tflite"))
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_softmax_needs_two_classes(tmp_path):
    one = segmentation.LRASPP("MobileNetV3Small", num_classes=1, input_shape=(SIZE, SIZE, 3),
                              backbone_weights=None)
    with pytest.raises(ValueError, match="'SOFTMAX' needs 2 or more classes"):
        export_segmenter(one, str(tmp_path / "s.tflite"), labels=["person"])
    assert list(tmp_path.iterdir()) == []


def test_segmenter_metadata_refuses_what_mediapipe_refuses(exported, tmp_path):
    from tensorflow.lite.python import schema_py_generated as tflite_fb

    source = exported("float32").path
    with open(source, "rb") as f:
        content = f.read()

    def variant(name, change):
        model = tflite_fb.ModelT.InitFromObj(tflite_fb.Model.GetRootAs(content, 0))
        graph = model.subgraphs[0]
        change(graph.tensors[graph.outputs[0]])
        import flatbuffers

        builder = flatbuffers.Builder(0)
        builder.Finish(model.Pack(builder), b"TFL3")
        path = tmp_path / name
        path.write_bytes(bytes(builder.Output()))
        return str(path)

    def uint8(t):
        t.type = tflite_fb.TensorType.UINT8

    def flat(t):
        t.shape = np.array([1, 4], np.int32)

    def one_channel(t):
        t.shape = np.array([1, SIZE, SIZE, 1], np.int32)

    with pytest.raises(ValueError, match="output must be float32: MediaPipe's ImageSegmenter"):
        md.add_segmenter_metadata(variant("u.tflite", uint8), labels=LABELS)
    with pytest.raises(ValueError, match="1 x height x width x classes"):
        md.add_segmenter_metadata(variant("f.tflite", flat), labels=LABELS)
    with pytest.raises(ValueError, match="'SOFTMAX' needs 2 or more classes"):
        md.add_segmenter_metadata(variant("o.tflite", one_channel), labels=["x"])
    with pytest.raises(ValueError, match=r"one entry per class of the model's output \(4\)"):
        md.add_segmenter_metadata(source, labels=LABELS[:2])
    # Written again with another activation: one metadata entry, the new options.
    copy = md.add_segmenter_metadata(source, labels=LABELS, activation="sigmoid",
                                     output_path=str(tmp_path / "sigmoid.tflite"))
    assert md.read_segmenter_options(copy) == {"activation": "SIGMOID"}
    assert md.read_metadata(copy)["labels"] == LABELS
    assert md.read_segmenter_options(source) == {"activation": "SOFTMAX"}  # left as it was


# --- the pieces segmentation needs from the bridge and tfmot ----------------------------------


def test_resampling_layers_translate_and_pass_quantization_through():
    from keras_mobile.quantization import configs, quantize_model

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Resizing(12, 12, interpolation="bilinear", name="resize")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", name="up")(x)
    model = keras.Model(inputs, x)
    assert bridge.translation_problem(model) is None  # Resizing's data_format dropped
    twin = bridge.to_tf_keras(model)
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(twin(images), model(images), atol=1e-4)
    qat = quantize_model(model)
    wrapped = {layer.name: layer for layer in qat.layers}
    for name in ("resize", "up"):
        config = wrapped[f"quant_{name}"].quantize_config
        assert isinstance(config, configs.QuantizeNothing), (name, config)



def test_pspnet_uneven_pooling_is_one_int8_partition(tmp_path):
    """PSPNet's adaptive pooling in uneven bins (a 4x4 map in 3 and 6 bins): a frozen 1x1
    convolution between transposes, which int8 conversion calibrates and XNNPACK runs as
    one partition with no float op."""
    seg = segmentation.PSPNet("MobileNetV3Small", num_classes=4, input_shape=(128, 128, 3),
                              backbone_weights=None, auxiliary_head=False)
    assert seg.get_layer("P5").output.shape[1:3] == (4, 4)
    images = np.random.default_rng(0).uniform(0, 255, (8, 128, 128, 3)).astype(np.float32)
    # Untrained BN statistics give int8 scales XNNPACK refuses (17 partitions): set them
    # from the images, as training would.
    recalibrate_batchnorm(seg, images)
    report = export_segmenter(seg, str(tmp_path / "psp.tflite"), labels=LABELS, mode="int8",
                              representative_data=images,
                              tolerance=SegmentationTolerance(0.0))  # untrained: near-ties
    assert report.xnnpack_partitions == 1
    assert inspect(report.path).float_ops == []
