"""keras_mobile.search.roofline: block grouping, the roofline's arithmetic, the report, and
one real (tiny) peak measurement in LiteRT."""

import math
import os

import pytest

import keras_mobile
from keras_mobile.profiling import profile
from keras_mobile.search import roofline

PEAKS = roofline.Peaks(macs_per_ms=50e6, bytes_per_ms=20e6, machine="test", date="today")


@pytest.fixture(scope="module")
def mobilenet():
    return keras_mobile.MobileNetV2(alpha=0.35, input_shape=(32, 32, 3), weights=None,
                                    classes=10)


@pytest.fixture(scope="module")
def emo():
    return keras_mobile.EMO1M(input_shape=(64, 64, 3), weights=None, classes=10)


def test_blocks_sum_to_profile_and_name_every_scope(mobilenet, emo):
    for model in (mobilenet, emo):
        rows = roofline.blocks(model)
        assert sum(r.macs for r in rows) == profile(model).macs
        assert sum(sum(c.macs for c in r.kinds.values()) for r in rows) == profile(model).macs
        names = [r.name for r in rows]
        assert names[0] == "stem" and names[-2:] == ["top", "head"]
        assert len(names) == len(set(names))  # one row per scope, in order
    names = [r.name for r in roofline.blocks(mobilenet)]
    assert names[1:4] == ["block1a", "block2a", "block2b"] and "block7a" in names
    # head: the pooling and the classifier (Dense -> gemm)
    head = roofline.blocks(mobilenet)[-1]
    assert head.kinds["gemm"].macs == 1280 * 10


def test_depthwise_intensity_below_gemm_in_the_same_block(mobilenet):
    block = {r.name: r for r in roofline.blocks(mobilenet)}["block2b"]
    dw, gemm = block.kinds["depthwise"], block.kinds["gemm"]
    # 8x8x48 depthwise 3x3: 27648 MACs; reads 8x8x48, writes 8x8x48, 3*3*48 weights
    assert dw.macs == 27648 and dw.bytes_moved == 4 * (2 * 3072 + 432)
    assert dw.intensity == pytest.approx(27648 / 26304)
    # expand (8x8x8 -> 48) and project (48 -> 8) 1x1 convs, BatchNorm folded, ReLU fused
    assert gemm.macs == 2 * 24576 and gemm.bytes_moved == 15872 + 15872
    assert dw.intensity < gemm.intensity
    assert block.kinds["elementwise"].bytes_moved == 6144  # only the residual Add moves
    # int8: one byte per element, intensity x4
    int8 = {r.name: r for r in roofline.blocks(mobilenet, "int8")}["block2b"]
    assert int8.kinds["depthwise"].bytes_moved * 4 == dw.bytes_moved
    assert int8.kinds["depthwise"].intensity == pytest.approx(4 * dw.intensity)
    # unfused: profiling's bytes (BatchNorm and ReLU move their tensors)
    plain = {r.name: r for r in roofline.blocks(mobilenet, fused=False)}["block2b"]
    assert plain.kinds["elementwise"].bytes_moved > 6144


def test_attention_rows_for_emo(emo):
    rows = roofline.blocks(emo)
    block = {r.name: r for r in rows}["block3b"]
    attention = block.kinds["attention"]
    assert attention.macs == 384160 and attention.layers == 1
    # traced: the matmuls alone move less than the whole layer (softmax, transposes)
    assert 0 < block.attention_matmul.bytes_moved < attention.bytes_moved
    assert attention.bytes_moved > 62720  # more than profiling's inputs + outputs
    kinds = roofline.by_kind(rows)
    assert set(kinds) == {"gemm", "depthwise", "attention", "elementwise", "attention_matmul"}
    assert kinds["attention"].macs == profile(emo).macs_by_type["attention_matmul"]
    assert kinds["attention"].intensity < kinds["gemm"].intensity
    assert kinds["depthwise"].intensity < kinds["gemm"].intensity
    assert "attention" not in roofline.by_kind(roofline.blocks(keras_mobile.MobileNetV2(
        alpha=0.35, input_shape=(32, 32, 3), weights=None, classes=10)))


def test_peaks_arithmetic():
    assert PEAKS.ridge == pytest.approx(2.5)
    assert PEAKS.attainable(1.0) == pytest.approx(20e6)
    assert PEAKS.attainable(2.5) == pytest.approx(50e6)
    assert PEAKS.attainable(10.0) == pytest.approx(50e6)
    assert PEAKS.bound(1.0) == "memory" and PEAKS.bound(3.0) == "compute"
    assert PEAKS.ms(50e6, 1e6) == pytest.approx(1.0)  # compute bound: 1 ms
    assert PEAKS.ms(1e6, 40e6) == pytest.approx(2.0)  # memory bound: 2 ms
    with pytest.raises(ValueError, match="bytes_per_ms must be a positive finite number"):
        roofline.Peaks(macs_per_ms=1.0, bytes_per_ms=0.0)


def test_report_names_every_block_and_kind(emo, tmp_path):
    rows = roofline.blocks(emo)
    text = roofline.report(emo, PEAKS, "float32", rows=rows)
    for row in rows:
        assert f"| {row.name} |" in text
    assert "ridge point 2.5 MAC/byte" in text
    assert "| depthwise |" in text and "| attention |" in text
    assert "no converted graph was given" in text
    assert "Why: depthwise sits at" in text
    # a measured kernel profile adds the achieved rates
    kernel_ms = {"GEMM: 1x1 conv, dense, matmul": 1.0, "depthwise conv": 0.5, "softmax": 0.1,
                 "copies, transposes, padding": 0.1}
    rates = roofline.achieved(rows, kernel_ms)
    kinds = roofline.by_kind(rows)
    assert rates["gemm"][1] == pytest.approx(kinds["gemm"].macs + kinds["attention"].macs)
    assert rates["depthwise"][1] == pytest.approx(kinds["depthwise"].macs / 0.5)
    assert rates["attention"][0] == pytest.approx(kinds["attention"].macs / rates["gemm"][1]
                                                  + 0.2)
    text = roofline.report(emo, PEAKS, "float32", rows=rows, kernel_ms=kernel_ms)
    assert "achieved (MAC/ms)" in text and "| depthwise conv | 0.500 |" in text
    path = roofline.plot(rows, PEAKS, tmp_path / "roofline.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["roofline.png"]  # no temporary file left


def test_bad_arguments(mobilenet):
    message = 'mode must be "float32" or "int8". Received: mode=\'x\''
    for call in (lambda: roofline.blocks(mobilenet, "x"),
                 lambda: roofline.report(mobilenet, PEAKS, "x"),
                 lambda: roofline.measure_peaks(mode="x"),
                 lambda: roofline.Peaks(1.0, 1.0, mode="x")):
        with pytest.raises(ValueError) as error:
            call()
        assert str(error.value) == message
    with pytest.raises(TypeError, match="model must be a functional keras.Model"):
        roofline.blocks("not a model")
    with pytest.raises(ValueError, match="peaks were measured in mode='float32'"):
        roofline.report(mobilenet, PEAKS, "int8")
    with pytest.raises(ValueError, match="gemm_shapes must be a non-empty list"):
        roofline.measure_peaks(gemm_shapes=[(8, 8, 16)])
    with pytest.raises(ValueError, match=r"path must end with \.png"):
        roofline.plot(roofline.blocks(mobilenet), PEAKS, "chart.jpg")


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_measure_peaks_in_litert(mode, tmp_path):
    peaks = roofline.measure_peaks(1, mode, tmp_path, gemm_shapes=[(8, 8, 64, 64)],
                                   elementwise_shapes=[(32, 32, 16)], cache_shapes=[],
                                   num_runs=5, warmup_runs=1, rounds=1)
    assert peaks.mode == mode and peaks.num_threads == 1 and peaks.machine and peaks.date
    for value in (peaks.macs_per_ms, peaks.bytes_per_ms, peaks.ridge):
        assert math.isfinite(value) and value > 0
    assert peaks.cache_bytes_per_ms is None
    labels = set(peaks.measurements)
    assert f"conv1x1 8x8x64->64 {mode}" in labels and f"add 32x32x16 {mode}" in labels
    assert peaks.macs_per_ms == peaks.measurements[f"conv1x1 8x8x64->64 {mode}"]
    if mode == "int8":  # the ADD also runs in float32; the better bytes/ms counts
        assert peaks.bytes_per_ms == max(peaks.measurements["add 32x32x16 int8"],
                                         peaks.measurements["add 32x32x16 float32"])
    assert sorted(os.listdir(tmp_path)) == sorted(
        [f"peak_gemm_8x8x64to64_{mode}.tflite"]
        + [f"peak_add_32x32x16_{m}.tflite" for m in (("int8", "float32") if mode == "int8"
                                                      else ("float32",))])
