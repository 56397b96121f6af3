"""TFLite metadata: MediaPipe's ImageClassifier reads what add_metadata writes.

One tiny MobileNetV2 (64 px, random but image-dependent weights) is converted once to
float32 and once to full int8 with uint8 I/O; every test works on copies of those files.
"""

import io
import os
import zipfile

import flatbuffers
import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from mediapipe.tasks.python import BaseOptions, vision
from mediapipe.tasks.python.vision.core.image import Image, ImageFormat
from tensorflow.lite.python import schema_py_generated as tflite_fb

import keras_mobile
from keras_mobile.tflite import metadata as md

SIZE = 64
LABELS = ["apple", "bicycle", "cloud", "dune", "ember"]


def _images():
    """Eight synthetic RGB uint8 images: gradients, shapes, a checkerboard, a flat grey."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    disc = ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.09)[..., None]
    box = ((abs(x - 0.3) < 0.2) & (abs(y - 0.6) < 0.25))[..., None]
    checker = (((x * 8).astype(int) + (y * 8).astype(int)) % 2)[..., None]
    images = [
        np.stack([x, 0 * x, 1 - x], -1),
        np.stack([0 * y, y, 0.2 + 0 * y], -1),
        np.where(disc, [0.1, 0.2, 0.9], [1.0, 1.0, 1.0]),
        np.repeat(checker, 3, -1) * 1.0,
        np.stack([(x + y) / 2, 1 - y, x * y], -1),
        np.where(box, [0.9, 0.8, 0.1], [0.2, 0.1, 0.3]),
        np.stack([np.sin(6 * x) * 0.5 + 0.5, np.cos(5 * y) * 0.5 + 0.5, 0.5 + 0 * x], -1),
        np.full((SIZE, SIZE, 3), 0.5),
    ]
    return [np.round(255 * np.clip(i, 0, 1)).astype(np.uint8) for i in images]


@pytest.fixture(scope="module")
def images():
    return _images()


@pytest.fixture(scope="module")
def keras_model(images):
    """A batch-1 MobileNetV2 whose scores depend on the image: random BN scales and
    statistics taken from the images (else the random net saturates to a constant)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    base = keras_mobile.MobileNetV2(weights=None, alpha=0.35, input_shape=(SIZE, SIZE, 3),
                                    classes=len(LABELS))
    batch = np.stack(images).astype("float32")
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0.0, 0.3, layer.beta.shape))
    base(np.concatenate([batch, rng.uniform(0, 255, batch.shape)]).astype("float32"),
         training=True)
    # A head that gives image i the top class i % 5 (logit margin >= ~2) over random logits.
    features = keras.Model(base.input, base.get_layer("avg_pool").output).predict(batch,
                                                                                verbose=0)
    logits = rng.normal(0.0, 1.0, (len(images), len(LABELS)))
    logits[np.arange(len(images)), np.arange(len(images)) % len(LABELS)] += 4.0
    head = base.get_layer("predictions")
    head.kernel.assign(np.linalg.lstsq(features, logits, rcond=None)[0])
    head.bias.assign(np.zeros(len(LABELS)))
    inputs = keras.Input((SIZE, SIZE, 3), batch_size=1)
    return keras.Model(inputs, base(inputs))


@pytest.fixture(scope="module")
def keras_scores(keras_model, images):
    return np.concatenate([keras_model.predict(i[None].astype("float32"), verbose=0)
                           for i in images])


@pytest.fixture(scope="module")
def float_model(keras_model):
    return tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()


@pytest.fixture(scope="module")
def uint8_model(keras_model, images):
    """Full int8 with uint8 I/O: the integer types MediaPipe accepts (int8 it refuses)."""
    rng = np.random.default_rng(1)

    def representative():
        for image in images:
            yield [image[None].astype("float32")]
        for low, high in ((0, 255), (0, 1), (254, 255)):  # the input range is [0, 255]
            yield [rng.uniform(low, high, (1, SIZE, SIZE, 3)).round().astype("float32")]

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return converter.convert()


def _write(tmp_path, content, name="model.tflite"):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def _classify(path, image, k=len(LABELS)):
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=path),
                                            max_results=k)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        result = classifier.classify(Image(image_format=ImageFormat.SRGB, data=image))
    return [(c.category_name, c.score) for c in result.classifications[0].categories]


def _interpret(content, image):
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
    interpreter.invoke()
    output = interpreter.get_output_details()[0]
    return interpreter.get_tensor(output["index"])[0], output["quantization"]


def _metadata_entries(content):
    model = tflite_fb.Model.GetRootAs(content, 0)
    names = [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]
    return names, model.BuffersLength()


def test_image_classifier_matches_keras(tmp_path, float_model, images, keras_scores):
    path = md.add_metadata(_write(tmp_path, float_model), labels=LABELS)
    top1 = keras_scores.argmax(1)
    np.testing.assert_array_equal(top1, np.arange(len(images)) % len(LABELS))
    for image, expected in zip(images, keras_scores, strict=True):
        got = _classify(path, image, k=3)
        order = np.argsort(-expected)[:3]
        assert [name for name, _ in got] == [LABELS[i] for i in order]
        np.testing.assert_allclose([s for _, s in got], expected[order], atol=1e-5)


def test_float_model_without_metadata_is_refused(tmp_path, float_model, images):
    with pytest.raises(Exception, match="NormalizationOptions"):
        _classify(_write(tmp_path, float_model), images[0])


def test_uint8_model_runs_in_image_classifier(tmp_path, uint8_model, images, keras_scores):
    path = md.add_metadata(_write(tmp_path, uint8_model), labels=LABELS)
    agree = 0
    for image, expected in zip(images, keras_scores, strict=True):
        got = dict(_classify(path, image))
        raw, (scale, zero) = _interpret(uint8_model, image)
        # MediaPipe feeds the raw pixels and dequantizes the uint8 scores.
        np.testing.assert_allclose([got[name] for name in LABELS],
                                   scale * (raw.astype(np.float32) - zero), atol=1e-6)
        agree += max(got, key=got.get) == LABELS[expected.argmax()]
    print(f"uint8 model top-1 agrees with Keras float on {agree}/{len(images)} images")
    assert agree >= len(images) - 2
    read = md.read_metadata(path)
    assert (read["input_min"], read["input_max"]) == ([0.0], [255.0])
    assert read["labels"] == LABELS


def test_round_trip(tmp_path, float_model):
    path = _write(tmp_path, float_model)
    md.add_metadata(path, labels=LABELS, name="tiny_mnv2", version="2.1",
                    description="A test classifier.", author="keras_mobile", license="Apache-2.0",
                    mean=(127.5,), std=(127.5,), min_max=(0.0, 255.0))
    read = md.read_metadata(path)
    details = Interpreter(model_path=path)
    assert read == {
        "name": "tiny_mnv2", "version": "2.1", "description": "A test classifier.",
        "author": "keras_mobile", "license": "Apache-2.0", "min_parser_version": "1.0.0",
        "input_names": ["image"], "output_names": ["score"],
        "input_tensors": [details.get_input_details()[0]["name"]],
        "output_tensors": [details.get_output_details()[0]["name"]],
        "mean": [127.5], "std": [127.5], "color_space": "RGB",
        "input_min": [-1.0], "input_max": [1.0],
        "labels": LABELS, "associated_files": ["labels.txt"],
    }
    assert md.read_metadata(_write(tmp_path, float_model, "bare.tflite")) == {}


def test_defaults_and_mixed_lengths(tmp_path, float_model):
    path = md.add_metadata(_write(tmp_path, float_model, "m.tflite"), mean=0.0, std=(1, 2, 4))
    read = md.read_metadata(path)
    assert (read["name"], read["mean"], read["std"]) == ("m", [0.0] * 3, [1.0, 2.0, 4.0])
    assert read["input_max"] == [255.0, 127.5, 63.75]
    assert (read["labels"], read["associated_files"]) == (None, [])
    assert read["description"] == "Image classifier: 64x64 RGB input, 5 classes."


def test_twice_keeps_one_entry_and_one_archive(tmp_path, float_model, images):
    path = _write(tmp_path, float_model)
    md.add_metadata(path, labels=LABELS)
    first = open(path, "rb").read()
    md.add_metadata(path, labels=LABELS)
    second = open(path, "rb").read()
    assert second == first  # replaced, not appended: same bytes
    names, buffers = _metadata_entries(second)
    assert names.count(md.METADATA_NAME) == 1
    assert buffers == _metadata_entries(float_model)[1] + 1
    other = [label.upper() for label in LABELS]
    md.add_metadata(path, labels=other)
    third = open(path, "rb").read()
    assert _metadata_entries(third) == (names, buffers)
    assert zipfile.ZipFile(io.BytesIO(third)).namelist() == ["labels.txt"]
    assert md.read_metadata(path)["labels"] == other
    # The repacked graph computes the same bits, and keeps 16-byte aligned weights.
    for image in images[:2]:
        np.testing.assert_array_equal(_interpret(third, image.astype("float32"))[0],
                                      _interpret(float_model, image.astype("float32"))[0])
    model = tflite_fb.Model.GetRootAs(third, 0)
    starts = []
    for i in range(model.BuffersLength()):
        table = model.Buffers(i)._tab
        field = table.Offset(4)  # Buffer.data
        if field and table.VectorLen(field):
            starts.append(table.Vector(field))
    assert len(starts) > 10 and all(start % 16 == 0 for start in starts)


def test_failed_add_leaves_file_untouched(tmp_path, float_model, monkeypatch):
    path = _write(tmp_path, float_model)
    md.add_metadata(path, labels=LABELS)
    before = open(path, "rb").read()
    with pytest.raises(ValueError, match=r"Received: len\(labels\)=4"):
        md.add_metadata(path, labels=LABELS[:4])

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(md.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        md.add_metadata(path, labels=[label * 2 for label in LABELS])
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["model.tflite"]  # no temporary file left behind


def test_output_path_leaves_source_alone(tmp_path, float_model):
    source = _write(tmp_path, float_model)
    target = str(tmp_path / "with_metadata.tflite")
    assert md.add_metadata(source, labels=LABELS, output_path=target) == target
    assert open(source, "rb").read() == float_model
    assert md.read_metadata(target)["labels"] == LABELS


def test_int8_io_is_refused(tmp_path, uint8_model):
    model = tflite_fb.ModelT.InitFromObj(tflite_fb.Model.GetRootAs(uint8_model, 0))
    graph = model.subgraphs[0]
    graph.tensors[graph.inputs[0]].type = tflite_fb.TensorType.INT8
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"TFL3")
    path = _write(tmp_path, bytes(builder.Output()))
    with pytest.raises(ValueError, match="input dtype=INT8.*inference_input_type=tf.uint8"):
        md.add_metadata(path, labels=LABELS)


def test_uint8_input_warns_when_quantization_disagrees(tmp_path, uint8_model):
    with pytest.warns(UserWarning, match=r"zero_point=0, .* not as \(p - mean\) / std"):
        md.add_metadata(_write(tmp_path, uint8_model), mean=127.5, std=127.5)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"mean": (1.0, 2.0)}, ValueError, r"Received: mean=\(1.0, 2.0\)"),
    ({"std": (1.0, 0.0, 1.0)}, ValueError, "std must be > 0"),
    ({"std": "1"}, ValueError, "Received: std='1'"),
    ({"color_space": "BGR"}, ValueError, "Received: color_space='BGR'"),
    ({"min_max": (255, 0)}, ValueError, r"Received: min_max=\(255, 0\)"),
    ({"labels": "apple"}, TypeError, "Received: labels='apple'"),
    ({"labels": ["a", "b\nc", "d", "e", "f"]}, ValueError, "without line breaks"),
    ({"name": 3}, TypeError, "Received: name=3"),
    ({"color_space": "GRAYSCALE"}, ValueError, "1 x height x width x 1"),
])
def test_bad_arguments(tmp_path, float_model, kwargs, error, match):
    path = _write(tmp_path, float_model)
    with pytest.raises(error, match=match):
        md.add_metadata(path, **kwargs)
    assert open(path, "rb").read() == float_model


def test_bad_paths(tmp_path, float_model):
    with pytest.raises(ValueError, match="must be an existing .tflite file"):
        md.add_metadata(str(tmp_path / "missing.tflite"))
    with pytest.raises(ValueError, match="must be a TFLite flatbuffer"):
        md.add_metadata(_write(tmp_path, b"\x00" * 64, "zeros.tflite"))
    with pytest.raises(ValueError, match="output_path must be in an existing directory"):
        md.add_metadata(_write(tmp_path, float_model),
                        output_path=str(tmp_path / "no" / "m.tflite"))


def test_min_parser_version():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb

    def version(**subgraph):
        meta = metadata_fb.ModelMetadataT()
        meta.subgraphMetadata = [metadata_fb.SubGraphMetadataT(**subgraph)]
        return md.min_parser_version(meta)

    tensor = metadata_fb.TensorMetadataT
    assert version() == "1.0.0"
    assert version(inputProcessUnits=[]) == "1.1.0"
    assert version(outputTensorGroups=[]) == "1.2.0"
    assert version(outputTensorMetadata=[tensor(associatedFiles=[metadata_fb.AssociatedFileT(
        type=metadata_fb.AssociatedFileType.VOCABULARY)])]) == "1.0.1"
    assert version(outputTensorMetadata=[tensor(associatedFiles=[metadata_fb.AssociatedFileT(
        version="2")])]) == "1.4.1"
    assert version(customMetadata=[], inputProcessUnits=[]) == "1.5.0"
