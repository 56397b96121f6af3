"""keras_mobile.tflite.selective: the int8 ops XNNPACK cannot run compute in float32
between a DEQUANTIZE and a QUANTIZE, so an int8 model stays in one XNNPACK partition;
``denylisted_ops=()`` keeps a fully integer model."""

import numpy as np
import pytest
from conftest import TINY, tiny_model

from keras_mobile import tflite
from keras_mobile.tflite import runtime, selective
from keras_mobile.tflite.inspect import parse_subgraph, read_model

ISLAND_OPS = {"DEQUANTIZE", "QUANTIZE", "SOFTMAX", "RSQRT", "BATCH_MATMUL", "ADD", "SUB", "MUL"}


def _tiny(name):
    """A tiny model (conftest.tiny_model) and 16 images for it."""
    return tiny_model(name), tflite.synthetic_images(16, TINY[name]["input_shape"], seed=3)


@pytest.fixture(scope="module")
def integer_emo(tmp_path_factory):
    """A tiny EMO-1M converted fully integer (denylisted_ops=()), and its Keras model."""
    model, images = _tiny("EMO1M")
    path = str(tmp_path_factory.mktemp("emo") / "integer.tflite")
    report = tflite.convert(model, path, mode="int8", representative_data=images,
                            tolerance=tflite.Tolerance(), denylisted_ops=())
    return model, images, report


def _names(flatbuffer):
    return [name for _, name in tflite.inspect(flatbuffer).float_ops]


def test_softmax_head_stays_in_the_xnnpack_partition(tmp_path):
    """A conv classifier's int8 SOFTMAX head used to leave XNNPACK (2 partitions); by
    default it computes in float32 from the int8 logits, and the output DEQUANTIZE goes."""
    model, images = _tiny("MobileNetV2")
    default = tflite.convert(model, str(tmp_path / "d.tflite"), mode="int8",
                             representative_data=images, tolerance=tflite.Tolerance())
    integer = tflite.convert(model, str(tmp_path / "i.tflite"), mode="int8",
                             representative_data=images, tolerance=tflite.Tolerance(),
                             denylisted_ops=())
    assert (default.xnnpack_partitions, default.fully_delegated) == (1, True), default
    assert (integer.xnnpack_partitions, integer.fully_delegated) == (2, False), integer
    assert integer.float_ops == 0
    assert _names(default.path) == ["DEQUANTIZE", "SOFTMAX"]  # the logits, then softmax
    assert default.ops["DEQUANTIZE"] == integer.ops["DEQUANTIZE"] == 1
    # The same int8 logits: the float softmax differs from the int8 one by its rounding
    # (output steps of 1/256) only, and is nearer to Keras.
    default_probs = runtime.predict(runtime.interpreter(default.path), images)[0]
    integer_probs = runtime.predict(runtime.interpreter(integer.path), images)[0]
    assert np.abs(default_probs - integer_probs).max() <= 1 / 256 + 1e-6
    np.testing.assert_allclose(default_probs.sum(1), 1.0, atol=1e-5)
    keras_probs = np.asarray(model(images))
    assert np.abs(default_probs - keras_probs).mean() <= np.abs(integer_probs
                                                                - keras_probs).mean()


def test_integer_output_keeps_its_quantize(tmp_path):
    """A uint8-I/O model: the float softmax is quantized back to int8 in XNNPACK (the
    uint8 <-> int8 QUANTIZE at each end stays outside it, as in any uint8-I/O model)."""
    model, images = _tiny("MobileNetV2")
    report = tflite.convert(model, str(tmp_path / "u.tflite"), mode="int8",
                            representative_data=images, tolerance=tflite.Tolerance(),
                            inference_input_type="uint8", inference_output_type="uint8")
    assert report.xnnpack_partitions == 1, report
    assert _names(report.path) == ["DEQUANTIZE", "SOFTMAX", "QUANTIZE"]
    graph = parse_subgraph(read_model(report.path)[0])
    assert [op.name for op in graph.ops[-2:]] == ["QUANTIZE", "QUANTIZE"]  # float->int8->uint8
    probs = runtime.predict(runtime.interpreter(report.path), images)[0]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=0.05)


def test_emo_attention_and_layernorm_islands(integer_emo):
    """EMO's int8 attention (BATCH_MATMUL with a non-zero zero point, SOFTMAX) and
    LayerNorms (the epsilon ADD out of XNNPACK's scale range, RSQRT): many partitions
    fully integer, one after the rewrite, computing the same function."""
    model, images, integer = integer_emo
    flatbuffer = open(integer.path, "rb").read()
    rewritten = selective.dequantize_ops(flatbuffer)
    assert integer.xnnpack_partitions > 3 and integer.float_ops == 0
    it = runtime.interpreter(rewritten)
    assert runtime.delegation(it) == (1, True)
    graph = parse_subgraph(read_model(rewritten)[0])
    floats = {op.name for op in graph.ops if op.outputs[0].dtype == "FLOAT32"}
    assert {"SOFTMAX", "RSQRT", "BATCH_MATMUL", "DEQUANTIZE"} <= floats <= ISLAND_OPS
    # Attention is one island: QK^T -> SOFTMAX -> AV read float inputs only, and the
    # epsilon of each LayerNorm is a float constant again (1e-6, dequantized).
    for op in graph.ops:
        if op.name in ("SOFTMAX", "RSQRT"):
            assert [t.dtype for t in op.inputs + op.outputs] == ["FLOAT32", "FLOAT32"]
    epsilons = [t for op in graph.ops if op.name == "ADD" and op.outputs[0].dtype == "FLOAT32"
                for t in op.inputs if t.constant]
    assert epsilons
    # Same int8 tensors in, a float op instead of its int8 kernel: at least as close to
    # the Keras model as the fully integer file.
    before = runtime.predict(runtime.interpreter(flatbuffer), images)[0]
    after = runtime.predict(it, images)[0]
    keras_out = np.asarray(model(images))
    cosine = np.sum(after * keras_out, 1) / np.linalg.norm(after, axis=1) / np.linalg.norm(
        keras_out, axis=1)
    cosine_before = np.sum(before * keras_out, 1) / np.linalg.norm(before, axis=1) / \
        np.linalg.norm(keras_out, axis=1)
    assert cosine.mean() >= cosine_before.mean() - 0.02, (cosine.mean(), cosine_before.mean())


def test_named_ops_and_nothing_to_do(integer_emo):
    _, _, integer = integer_emo
    flatbuffer = open(integer.path, "rb").read()
    softmax_only = selective.dequantize_ops(flatbuffer, ("SOFTMAX",))
    assert set(_names(softmax_only)) == {"DEQUANTIZE", "SOFTMAX", "QUANTIZE"}
    assert selective.dequantize_ops(flatbuffer, ("HARD_SWISH",)) == flatbuffer  # none there
    float_model = tflite.convert(_tiny("MobileNetV2")[0], str(integer.path) + ".f.tflite")
    data = open(float_model.path, "rb").read()
    assert selective.dequantize_ops(data) == data  # no int8 op in a float model


@pytest.mark.parametrize("ops", ["SOFTMAX", ("softmax",), ("SOFTMAX", 3), "all"])
def test_bad_denylisted_ops(ops, tmp_path):
    model, images = _tiny("MobileNetV2")
    with pytest.raises(ValueError, match="denylisted_ops must be \"xnnpack\", a sequence of "
                                         "TFLite op names"):
        tflite.convert(model, str(tmp_path / "m.tflite"), mode="int8",
                       representative_data=images, denylisted_ops=ops)


def test_documented_qat_path_keeps_the_softmax_head_in_xnnpack(tmp_path):
    """quantize_model(model) with its defaults (the softmax head kept), a fit, convert int8:
    one XNNPACK partition without any extra argument."""
    import tf_keras

    from keras_mobile import quantization

    model, images = _tiny("MobileNetV2")
    labels = np.arange(len(images)) % 10
    qat = quantization.quantize_model(model, representative_data=images)
    qat.compile(tf_keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    qat.fit(images, labels, epochs=1, batch_size=8, verbose=0)
    report = tflite.convert(qat, str(tmp_path / "q.tflite"), mode="int8",
                            representative_data=images, tolerance=tflite.Tolerance())
    assert (report.xnnpack_partitions, report.fully_delegated) == (1, True), report
    assert report.ops["SOFTMAX"] == 1 and _names(report.path) == ["DEQUANTIZE", "SOFTMAX"]
