"""keras_mobile.tflite.inspect and the GPU delegate check, on tiny converted models."""

import contextlib
import io
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mobile
from keras_mobile.tflite import gpu
from keras_mobile.tflite.inspect import Graph, Op, Tensor, inspect, read_model, schema


def _convert(model, **options):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    for name, value in options.items():
        setattr(converter, name, value)
    return converter.convert()


def _small_cnn():
    x = keras.Input((16, 16, 3), batch_size=1)
    y = keras.layers.Conv2D(8, 3, activation="relu")(x)
    y = keras.layers.DepthwiseConv2D(3)(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(4, activation="softmax")(y))


def _int8(**options):
    data = np.random.default_rng(0).uniform(-1, 1, (4, 1, 16, 16, 3)).astype("float32")
    return _convert(_small_cnn(), optimizations=[tf.lite.Optimize.DEFAULT],
                    representative_dataset=lambda: ([d] for d in data), **options)


@pytest.fixture(scope="module")
def float_report():
    inp = keras.Input((32, 32, 3), batch_size=1)
    net = keras_mobile.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3), classes=4)
    return inspect(_convert(keras.Model(inp, net(inp))))


@pytest.fixture(scope="module")
def high_rank_model():
    """Window-attention-like data movement: 6-D TRANSPOSE, then a 5-D BATCH_MATMUL."""
    x = keras.Input((8, 8, 4), batch_size=1)
    y = keras.layers.Reshape((2, 4, 2, 4, 4))(x)
    y = keras.layers.Permute((1, 3, 2, 4, 5))(y)
    y = keras.layers.Reshape((2, 2, 16, 4))(y)
    return _convert(keras.Model(x, keras.ops.matmul(y, keras.ops.swapaxes(y, -1, -2))))


@pytest.fixture(scope="module")
def int8_model():
    return _int8(target_spec=_int8_spec(), inference_input_type=tf.int8,
                 inference_output_type=tf.int8)


def _int8_spec():
    spec = tf.lite.TargetSpec()
    spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return spec


def test_float_mobilenet_v2(float_report):
    r = float_report
    assert r.ops == {"CONV_2D": 35, "DEPTHWISE_CONV_2D": 17, "ADD": 11, "RESHAPE": 2, "MUL": 1,
                     "MEAN": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}
    assert (r.num_ops, r.num_subgraphs, r.max_rank) == (69, 1, 4)
    assert r.tensors_by_rank == {1: 2, 2: 3, 4: 65}
    assert r.high_rank_tensors == [] and r.dynamic_tensors == []
    assert [(s.shape, s.dtype, s.quantization) for s in r.inputs] == [((1, 32, 32, 3), "FLOAT32",
                                                                       None)]
    assert [(s.shape, s.dtype) for s in r.outputs] == [((1, 4), "FLOAT32")]
    assert len(r.float_ops) == 69  # a float model: every op computes in float
    assert (r.custom_ops, r.select_tf_ops, r.has_metadata) == ([], [], False)
    assert r.gpu.compatible and r.gpu.issues == () and r.gpu.notes == ()
    text = str(r)
    assert "CONV_2D x35" in text and "GPU delegate: compatible" in text
    d = json.loads(json.dumps(r.to_dict()))
    assert d["ops"]["DEPTHWISE_CONV_2D"] == 17 and d["gpu"]["compatible"] is True


def test_dynamic_shapes_are_not_gpu_ready():
    x = keras.Input((None, None, 3))  # no batch size, no spatial size
    y = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(x))
    r = inspect(_convert(keras.Model(x, keras.layers.Dense(4)(y))))
    assert r.inputs[0].shape == (-1, -1, -1, 3)
    assert r.inputs[0].name in r.dynamic_tensors and len(r.dynamic_tensors) == 4
    assert not r.gpu.compatible
    assert r.gpu.issues[0].op_index is None and "dynamic shape" in r.gpu.issues[0].reason
    assert "-1, -1, -1, 3" in r.gpu.issues[0].reason


def test_high_rank_graph_is_flagged_where_the_analyzer_is_not(high_rank_model):
    r = inspect(high_rank_model)
    assert r.ops == {"RESHAPE": 2, "TRANSPOSE": 1, "BATCH_MATMUL": 1}
    assert r.max_rank == 6 and r.tensors_by_rank == {4: 1, 5: 2, 6: 2}
    assert [s for _, s in r.high_rank_tensors] == [(1, 2, 4, 2, 4, 4), (1, 2, 2, 4, 4, 4),
                                                   (1, 2, 2, 16, 4), (1, 2, 2, 16, 16)]
    assert not r.gpu.compatible
    by_op = {}
    for issue in r.gpu.issues:
        by_op.setdefault(issue.op_name, []).append(issue.reason)
    assert set(by_op) == {"RESHAPE", "TRANSPOSE", "BATCH_MATMUL"}
    assert any("6-D permutation" in reason for reason in by_op["TRANSPOSE"])
    assert any(reason.startswith("6-D tensor") for reason in by_op["TRANSPOSE"])
    assert any(reason.startswith("5-D tensor") for reason in by_op["BATCH_MATMUL"])
    assert "version 6 > max supported 4" in by_op["TRANSPOSE"]
    assert any("adj_x/adj_y" in note for note in r.gpu.notes)  # swapaxes folds into adj_y
    # TF 2.21's Analyzer runs only CheckGpuDelegateCompatibility and calls this graph fine.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tf.lite.experimental.Analyzer.analyze(model_content=high_rank_model,
                                              gpu_compatibility=True)
    assert "Your model looks compatible with GPU delegate" in out.getvalue()
    assert "GPU COMPATIBILITY WARNING" not in out.getvalue()


def test_full_int8(int8_model):
    r = inspect(int8_model)
    (x,), (y,) = r.inputs, r.outputs
    assert (x.dtype, y.dtype) == ("INT8", "INT8")
    scale, zero_point = x.quantization
    assert 0 < scale < 1 and -128 <= zero_point <= 127 and isinstance(zero_point, int)
    assert y.quantization == (1 / 256, -128)  # softmax output in int8
    assert r.float_ops == []
    assert r.gpu.compatible and "dequantizes" in r.gpu.notes[0]
    strict = gpu.gpu_compatibility(int8_model, allow_quantized=False)
    assert not strict.compatible and "type INT8" in strict.issues[0].reason


def test_int8_with_float_io_has_no_float_op_but_the_boundary():
    r = inspect(_int8(target_spec=_int8_spec()))
    assert r.ops["QUANTIZE"] == 1 and r.ops["DEQUANTIZE"] == 1
    assert r.inputs[0].dtype == "FLOAT32" and r.float_ops == []


def test_dynamic_range_model_has_float_ops():
    x = keras.Input((32,), batch_size=1)
    y = keras.layers.Dense(4)(keras.layers.Dense(64, activation="relu")(x))
    data = _convert(keras.Model(x, y), optimizations=[tf.lite.Optimize.DEFAULT])
    r = inspect(data)
    assert r.float_ops == [(0, "FULLY_CONNECTED"), (1, "FULLY_CONNECTED")]
    graph = gpu.parse_subgraph(read_model(data)[0])
    assert any(t.constant and t.dtype == "INT8" for t in graph.tensors)  # int8 weights
    # Hybrid per-channel FULLY_CONNECTED is version 12 (op_version.cc); the GPU parser stops
    # at 9, so the delegate refuses it although ReadTensor could dequantize int8 weights.
    assert not r.gpu.compatible
    assert {(i.op_index, i.reason) for i in r.gpu.issues} == {
        (0, "version 12 > max supported 9"), (1, "version 12 > max supported 9")}


class _Erf(keras.layers.Layer):
    def call(self, x):
        return tf.math.erf(x)  # no TFLite builtin: a Select TF op


def test_flex_op_is_listed_and_not_gpu_ready():
    x = keras.Input((8, 4), batch_size=1)
    spec = tf.lite.TargetSpec()
    spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    r = inspect(_convert(keras.Model(x, _Erf()(x)), target_spec=spec))
    assert r.select_tf_ops == ["FlexErf"] and r.custom_ops == [] and r.ops == {"FlexErf": 1}
    assert not r.gpu.compatible
    assert [(i.op_name, "Flex" in i.reason) for i in r.gpu.issues] == [("FlexErf", True)]


def test_deprecated_builtin_code_and_path(int8_model, tmp_path):
    import flatbuffers

    model, _ = read_model(int8_model)
    for code in model.operatorCodes:  # as old converters wrote them
        code.deprecatedBuiltinCode, code.builtinCode = code.builtinCode, 0
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "old.tflite"
    path.write_bytes(bytes(builder.Output()))
    old, new = inspect(path), inspect(int8_model)
    assert old.ops == new.ops and "ADD" not in old.ops
    assert old.path == str(path) and new.path is None


def _t(index, shape, dtype="FLOAT32", constant=False, data=None):
    return Tensor(index, f"t{index}", tuple(shape), tuple(shape), dtype, constant, None, data)


def _options(name, **fields):
    options = getattr(schema(), name + "T")()
    for key, value in fields.items():
        setattr(options, key, value)
    return options


@pytest.mark.parametrize("op, expected", [
    (Op(0, "STRIDED_SLICE", 1, False, (_t(0, (1, 4, 4, 8)), _t(1, (4,), "INT32", True),
                                        _t(2, (4,), "INT32", True),
                                        _t(3, (4,), "INT32", True, (1, 1, 1, 1))),
        (_t(4, (4, 4, 8)),), _options("StridedSliceOptions", shrinkAxisMask=1)),
     "shrink_axis_mask is not supported"),
    (Op(0, "MEAN", 1, False, (_t(0, (1, 4, 4, 8)), _t(1, (2,), "INT32")), (_t(2, (1, 8)),),
        None), "input 1 ('t1') must be constant"),
    (Op(0, "ADD", 1, False, (_t(0, (1, 4, 4, 8)), _t(1, (4, 8))), (_t(2, (1, 4, 4, 8)),),
        None), "broadcast of [1, 4, 4, 8] with [4, 8]"),
    (Op(0, "SOFTMAX", 1, False, (_t(0, (1, 8)),), (_t(1, (1, 8)),),
        _options("SoftmaxOptions", beta=2.0)), "beta != 1"),
    (Op(0, "MIRROR_PAD", 1, False, (_t(0, (1, 4, 4, 8)), _t(1, (4, 2), "INT32", True)),
        (_t(2, (1, 6, 6, 8)),), _options("MirrorPadOptions", mode=1)),
     "only REFLECT mirror padding"),
    (Op(0, "CONV_2D", 7, False, (_t(0, (1, 4, 4, 8)), _t(1, (8, 3, 3, 8), constant=True)),
        (_t(2, (1, 2, 2, 8)),), _options("Conv2DOptions", strideH=1, strideW=1)),
     "version 7 > max supported 6"),
    (Op(0, "SPACE_TO_BATCH_ND", 1, False, (_t(0, (1, 4, 4, 8)),), (_t(1, (4, 2, 2, 8)),),
        None), "no GPU parser for this op (NewOperationParser)"),
])
def test_op_rules(op, expected):
    graph = Graph(op.inputs + op.outputs, (op,), (op.inputs[0].index,), (op.outputs[0].index,))
    report = gpu.gpu_compatibility(graph)
    assert not report.compatible
    assert expected in [issue.reason for issue in report.issues]
