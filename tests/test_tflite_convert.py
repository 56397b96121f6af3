"""keras_mobile.tflite.convert: every model converts, runs in LiteRT as one XNNPACK
partition with rank <= 4 tensors, and computes what Keras (and the official
EMO) computes; failures raise before anything is written."""

import os

import keras
import numpy as np
import pytest
from conftest import TINY, nhwc, state_dict, tiny_model

import keras_mobile
from keras_mobile import tflite
from keras_mobile.data.samples import recalibrate_batchnorm
from keras_mobile.export import export
from keras_mobile.tflite import runtime
from keras_mobile.tflite.inspect import parse_subgraph, read_model
from keras_mobile.weights import load_official_state_dict

# What computes in float in a default int8 model (keras_mobile.tflite.selective).
ISLAND_OPS = {"DEQUANTIZE", "QUANTIZE", "SOFTMAX", "RSQRT", "BATCH_MATMUL", "ADD", "SUB", "MUL"}
FULL_SIZE = ["MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large",
             "EfficientNetB0", "EfficientNetB0Sandglass", "MobileNeXt", "EMO2M"]


def _assert_deployable(report, mode):
    assert report.max_rank <= 4, report
    assert report.dynamic_tensors == 0, report
    assert report.xnnpack_partitions == 1 and report.fully_delegated, report
    if mode == "int8":
        assert report.float_ops == 0, report


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_float32_is_one_xnnpack_partition_and_exact(name, tmp_path):
    model = tiny_model(name)
    report = tflite.convert(model, str(tmp_path / "m.tflite"), mode="float32")
    _assert_deployable(report, "float32")
    assert report.parity.max_rel_diff <= 1e-4
    assert report.parity.top1_agreement == 1.0
    assert report.ops["CONV_2D"] >= 3
    it = runtime.interpreter(report.path)
    assert list(it.get_input_details()[0]["shape"]) == [1, *TINY[name]["input_shape"]]


@pytest.mark.parametrize("name", ["EMO1M", "MobileNetV3Small"])
@pytest.mark.parametrize("mode", ["float16", "dynamic", "int8"])
def test_tiny_quantized_modes(name, mode, tmp_path):
    model = tiny_model(name)
    shape = TINY[name]["input_shape"]
    data = tflite.synthetic_images(16, shape, seed=3)
    # Outputs of *random* deep nets are chaotic under quantization (keras.applications'
    # own MobileNetV2 in int8: cosine 0.14), so parity is gated on a trained model below.
    report = tflite.convert(model, str(tmp_path / "m.tflite"), mode=mode,
                            tolerance=tflite.Tolerance(),
                            representative_data=data if mode == "int8" else None)
    assert report.parity.samples == 16 and -1.0 <= report.parity.cosine <= 1.0
    assert report.max_rank <= 4 and report.dynamic_tensors == 0
    size_float = tflite.convert(model, str(tmp_path / "f.tflite"), check=False).size_bytes
    # float16 halves the weights, dynamic and int8 quarter them (plus the graph).
    assert report.size_bytes < (0.6 if mode == "float16" else 0.4) * size_float
    if mode == "int8":  # one partition: what XNNPACK runs only in float computes in float
        assert report.xnnpack_partitions == 1 and report.fully_delegated, report
        assert {n for _, n in tflite.inspect(report.path).float_ops} <= ISLAND_OPS


def test_int8_integer_io_quantizes_input_and_output(tmp_path):
    model = tiny_model("MobileNetV2")
    data = tflite.synthetic_images(32, (32, 32, 3), seed=5)
    report = tflite.convert(model, str(tmp_path / "q.tflite"), mode="int8",
                            representative_data=data, inference_input_type="uint8",
                            inference_output_type="uint8", tolerance=tflite.Tolerance())
    assert (report.input_type, report.output_type) == ("uint8", "uint8")
    it = runtime.interpreter(report.path)
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    scale, zero_point = inp["quantization"]
    assert 0.5 < scale < 2.0  # [0, 255] pixels map onto uint8 with about unit steps
    # An integer body; the softmax head computes in float from the int8 logits.
    assert [n for _, n in tflite.inspect(report.path).float_ops] == ["DEQUANTIZE", "SOFTMAX",
                                                                    "QUANTIZE"]
    probs = runtime.predict(it, data[:4])[0]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=0.05)  # dequantized softmax


def test_int8_hard_swish_stays_in_xnnpack(tmp_path):
    """The converter fuses Keras 3's x * relu6(x + 3) / 6 into HARD_SWISH, which XNNPACK
    runs only in float: a post-training int8 MobileNetV3 took one delegate partition per
    hard-swish (keras.applications' too). convert() hands it QAT's rewrite instead."""
    model = tiny_model("MobileNetV3Small")
    data = tflite.synthetic_images(32, TINY["MobileNetV3Small"]["input_shape"], seed=4)
    recalibrate_batchnorm(model, data)  # random weights otherwise shrink activations to ~1e-6
    hard_swish = sum(layer.get_config().get("activation") == "hard_silu"
                     for layer in model.layers if isinstance(layer, keras.layers.Activation))
    report = tflite.convert(model, str(tmp_path / "q.tflite"), mode="int8",
                            representative_data=data, tolerance=tflite.Tolerance())
    assert hard_swish >= 3 and "HARD_SWISH" not in report.ops
    assert report.ops["MUL"] >= 2 * hard_swish and report.ops["SOFTMAX"] == 1
    # One partition: an int8 body, then the softmax head in float (XNNPACK has no int8
    # SOFTMAX; fully integer, denylisted_ops=(), it is a second partition).
    assert report.xnnpack_partitions == 1 and report.fully_delegated, report
    assert [n for _, n in tflite.inspect(report.path).float_ops] == ["DEQUANTIZE", "SOFTMAX"]
    assert report.parity.cosine > 0.9  # the rewrite is the same function


def test_int8_without_the_rewrite_warns(tmp_path):
    """A model the bridge cannot translate (keras.applications') still converts, as it is."""
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3),
                                                classes=3, include_preprocessing=False)
    data = tflite.synthetic_images(8, (32, 32, 3), seed=4) / 127.5 - 1.0
    with pytest.warns(UserWarning, match="without keras_mobile's hard-swish/GELU rewrite"):
        report = tflite.convert(model, str(tmp_path / "k.tflite"), mode="int8",
                                representative_data=data, check=False)
    assert report.ops["HARD_SWISH"] >= 3


@pytest.fixture(scope="module")
def trained_emo():
    """A tiny EMO trained on a learnable task (the dominant colour channel)."""
    images = tflite.synthetic_images(512, (32, 32, 3), seed=3)
    labels = images.mean((1, 2)).argmax(1)
    keras.utils.set_random_seed(0)
    model = keras_mobile.EMO1M(weights=None, classes=3, input_shape=(32, 32, 3))
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(images[:448], labels[:448], epochs=6, batch_size=32, verbose=0)
    return model, images


def test_trained_model_is_learned(trained_emo):
    model, images = trained_emo
    labels = images.mean((1, 2)).argmax(1)
    # It learned, so the agreement below is not that of a constant output.
    assert model.evaluate(images[448:], labels[448:], verbose=0)[1] >= 0.8


@pytest.mark.parametrize("mode", ["float16", "dynamic", "int8"])
def test_quantized_modes_of_a_trained_model_pass_the_default_gate(trained_emo, mode, tmp_path):
    model, images = trained_emo
    report = tflite.convert(model, str(tmp_path / "m.tflite"), mode=mode,
                            representative_data=images[:448] if mode == "int8" else None,
                            check_data=images[448:], num_check_samples=64)
    assert report.parity.cosine >= tflite.TOLERANCES[mode].min_cosine
    assert report.parity.top1_agreement >= 0.9
    assert report.parity.top1_samples == 64  # float outputs: every image is decidable
    if mode == "int8":
        assert report.xnnpack_partitions == 1 and report.fully_delegated, report
        assert {n for _, n in tflite.inspect(report.path).float_ops} <= ISLAND_OPS
    else:
        assert report.float_ops > 0


def test_tflite_emo_1m_equals_official(emo_1m_reference, tmp_path):
    """The converted EMO-1M (official weights) reproduces the official logits."""
    model = keras_mobile.EMO1M(weights=None, include_preprocessing=False,
                               classifier_activation=None)
    load_official_state_dict(model, state_dict(emo_1m_reference))
    images = nhwc(emo_1m_reference["input_224"])
    report = tflite.convert(model, str(tmp_path / "emo1m.tflite"), check_data=images)
    _assert_deployable(report, "float32")
    logits = runtime.predict(runtime.interpreter(report.path), images)[0]
    expected = emo_1m_reference["logits_224"]
    assert np.abs(logits - expected).max() <= 1e-4 * np.ptp(expected)
    assert report.ops["BATCH_MATMUL"] == 18  # 9 attention blocks, QK^T and AV
    assert "GATHER" not in report.ops and "SHAPE" not in report.ops


def test_int8_percentile_calibration_of_a_trained_model(trained_emo, tmp_path):
    """mode="int8_percentile" converts EMO's fake-quantized graph, ranges at percentiles:
    it computes what the Keras model computes in one XNNPACK partition, and the attention's
    keys and values are symmetric (zero point 0: XNNPACK runs the int8 matmuls)."""
    model, images = trained_emo
    report = export(model, str(tmp_path / "p.tflite"), mode="int8_percentile",
                    representative_data=images[:448], check_data=images[448:],
                    num_check_samples=64)
    assert report.parity.cosine >= 0.95 and report.parity.top1_agreement >= 0.9, report.parity
    assert report.xnnpack_partitions == 1 and report.ops["BATCH_MATMUL"] == 18
    for op in parse_subgraph(read_model(report.path)[0]).ops:
        if op.name == "BATCH_MATMUL":
            assert op.inputs[1].dtype == "INT8" and op.inputs[1].quantization[1] == 0, op.inputs[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_float32_one_partition(name, tmp_path):
    model = keras_mobile.get_model(name, weights=None)
    recalibrate_batchnorm(model, tflite.synthetic_images(8, (224, 224, 3), seed=9))
    report = tflite.convert(model, str(tmp_path / "m.tflite"), num_check_samples=4)
    _assert_deployable(report, "float32")
    assert report.parity.max_rel_diff <= 1e-4


@pytest.mark.slow
def test_full_size_emo_int8_is_one_partition(tmp_path):
    model = keras_mobile.EMO1M(weights=None)
    data = tflite.synthetic_images(8, (224, 224, 3))
    recalibrate_batchnorm(model, data)
    report = tflite.convert(model, str(tmp_path / "m.tflite"), mode="int8",
                            representative_data=data, num_check_samples=4,
                            tolerance=tflite.Tolerance())  # random weights: not gated
    assert report.xnnpack_partitions == 1 and report.fully_delegated, report
    assert report.max_rank <= 4 and report.dynamic_tensors == 0
    integer = tflite.convert(model, str(tmp_path / "i.tflite"), mode="int8",
                             representative_data=data, check=False, denylisted_ops=())
    assert integer.float_ops == 0 and integer.xnnpack_partitions > 10, integer


# -- failures: clear errors, nothing overwritten -----------------------------------------------

def test_failed_check_keeps_the_existing_file(tmp_path):
    path = tmp_path / "m.tflite"
    model = tiny_model("MobileNetV2")
    tflite.convert(model, str(path))
    before = path.read_bytes()
    impossible = tflite.Tolerance(min_cosine=1.5)
    with pytest.raises(tflite.ConversionError, match="does not compute what the Keras model") as e:
        tflite.convert(tiny_model("MobileNet"), str(path), tolerance=impossible)
    assert path.read_bytes() == before
    assert tflite.inspect(e.value.flatbuffer).ops["CONV_2D"] >= 3  # the refused model, in memory
    assert os.listdir(tmp_path) == ["m.tflite"]  # no temporary file left behind


def test_parity_detects_a_different_model(tmp_path):
    model = tiny_model("MobileNetV2")
    report = tflite.convert(model, str(tmp_path / "m.tflite"))
    other = tiny_model("MobileNetV2", seed=1)  # same graph, other random weights
    images = tflite.synthetic_images(4, (32, 32, 3))
    assert tflite.measure_parity(model, report.path, images).max_rel_diff <= 1e-4
    assert tflite.measure_parity(other, report.path, images).max_rel_diff > 1e-2


def test_metadata_through_convert(tmp_path):
    labels = [f"class_{i}" for i in range(10)]
    report = tflite.convert(tiny_model("MobileNetV2"), str(tmp_path / "m.tflite"),
                            metadata={"labels": labels, "name": "tiny"})
    assert report.has_metadata
    meta = tflite.read_metadata(report.path)
    assert meta["labels"] == labels and meta["name"] == "tiny"


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="fp16"), "mode must be one of"),
    (dict(mode="int8"), "needs representative_data"),
    (dict(inference_input_type="uint8"), "needs mode='int8'"),
    (dict(inference_output_type="int16", mode="int8"), "inference_output_type must be one of"),
    (dict(num_check_samples=0), "num_check_samples must be a positive int"),
    (dict(tolerance=1e-3), "tolerance must be"),
    (dict(reference="EMO1M"), "reference must be a Keras model. Received: reference=str"),
    (dict(reference=keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()])),
     r"reference must take the model's input shape \(None, 32, 32, 3\)"),
])
def test_bad_arguments(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        tflite.convert(tiny_model("MobileNetV2"), str(tmp_path / "m.tflite"), **kwargs)
    assert not os.listdir(tmp_path)


def test_bad_model_and_path(tmp_path):
    inputs = keras.Input((None, None, 3))
    dynamic = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match="input shape must be static"):
        tflite.convert(dynamic, str(tmp_path / "m.tflite"))
    model = tiny_model("MobileNetV2")
    with pytest.raises(ValueError, match="must end with .tflite"):
        tflite.convert(model, str(tmp_path / "m.tfl"))
    with pytest.raises(ValueError, match="folder for path does not exist"):
        tflite.convert(model, str(tmp_path / "missing" / "m.tflite"))
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    with pytest.raises(ValueError, match="single-input"):
        tflite.convert(keras.Model([a, b], keras.layers.Add()([a, b])), str(tmp_path / "m.tflite"))
    with pytest.raises(ValueError, match="must be a Keras model"):
        tflite.convert("EMO1M", str(tmp_path / "m.tflite"))
