"""keras_mobile.quantization: the Keras 3 -> tf_keras bridge is exact, every family
quantizes (tfmot QAT), converts to int8 TFLite with no float op, runs in LiteRT as
what the QAT model computes, and keeps the float model's accuracy."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import TINY, tiny_model

import keras_mobile
from keras_mobile import bridge, quantization, tflite
from keras_mobile.data.samples import recalibrate_batchnorm
from keras_mobile.export import export
from keras_mobile.quantization import calibration
from keras_mobile.tflite.inspect import parse_subgraph, read_model

# Families whose int8 graph XNNPACK takes whole (LiteRT's XNNPACK runs no int8
# SOFTMAX or RSQRT, which EMO's attention and LayerNorm need).
CONV_FAMILIES = ("MobileNet", "MobileNetV2", "MobileNetV3Small", "EfficientNetB0", "MobileNeXt")


def _dataset(count, size, seed=0, classes=3):
    """Synthetic texture tinted with the label's colour: a tiny net learns it in 3 epochs
    (val top-1 0.94-1.0), so it is trained, not chaotic, when int8 is compared with QAT."""
    labels = np.arange(count) % classes
    tint = 255 * np.eye(3, dtype="float32")[labels % 3][:, None, None, :]
    return 0.4 * tflite.synthetic_images(count, (size, size, 3), seed=seed) + 0.6 * tint, labels


# -- the bridge ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TINY))
def test_to_tf_keras_copies_weights_and_outputs_exactly(name):
    model = tiny_model(name, classifier_activation=None)  # logits: no softmax to sharpen rounding
    twin = quantization.to_tf_keras(model)
    assert type(twin).__module__.startswith("tf_keras")
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    weights, copied = model.get_weights(), twin.get_weights()
    assert len(weights) == len(copied) > 0
    assert all(np.array_equal(a, b) for a, b in zip(weights, copied, strict=True))
    images = tflite.synthetic_images(8, TINY[name]["input_shape"], seed=2)
    expected, actual = np.asarray(model(images)), np.asarray(twin(images))
    # Same weights, same math; Keras 3 and tf_keras BatchNorm kernels round differently
    # (float32: relative 1e-7 per op), which a deep random net amplifies to ~1.5e-5.
    assert np.abs(expected - actual).max() <= 5e-5 * np.ptp(expected)


@pytest.mark.parametrize("name, tolerance", [("MobileNetV3Small", 1e-5), ("EMO1M", 1e-3)])
def test_quantization_rewrites_keep_the_function(name, tolerance):
    """hard-swish -> x * relu6(x + 3) * (1/6 + one float32 step) is exact to 1e-7; GELU ->
    its tanh form is within 5e-4 per activation (checked below; an int8 step is ~1/40)."""
    model = tiny_model(name)
    model = keras.Model(model.inputs, model.get_layer("flatten" if name != "EMO1M" else
                                                      "predictions").input)  # logits/features
    twin = quantization.to_tf_keras(model, for_quantization=True)
    part = "_act_gate" if name == "MobileNetV3Small" else "_act_square"
    assert sum(layer.name.endswith(part) for layer in twin.layers) >= 3
    images = tflite.synthetic_images(8, TINY[name]["input_shape"], seed=2)
    expected, actual = np.asarray(model(images)), np.asarray(twin(images))
    assert np.abs(expected - actual).max() <= tolerance * np.abs(expected).max()
    x = np.linspace(-8, 8, 10001)
    exact = np.asarray(keras.activations.gelu(x.astype("float32")))
    assert np.abs(bridge.gelu_tanh(x) - exact).max() < 5e-4


def test_tfmot_adapter_was_written_for_the_installed_tfmot():
    """Every patch of tfmot lives in keras_mobile/quantization/tfmot_adapter.py, written
    for one release: a new tfmot fails here, in one place, before anything else."""
    from keras_mobile.quantization import tfmot_adapter

    tensorflow_model_optimization = tfmot_adapter.tfmot()  # the import goes through it
    assert tfmot_adapter.WRITTEN_FOR == "0.7.3"
    assert tensorflow_model_optimization.__version__ == "0.7.3", (
        f"tensorflow-model-optimization {tensorflow_model_optimization.__version__} is "
        "installed; the adapter (keras_mobile/quantization/tfmot_adapter.py) was written for "
        "0.7.3: check every patch in that module against the new release, then update this "
        "test (and WRITTEN_FOR, and the pin in setup.cfg).")


def test_importing_keras_mobile_imports_neither_tfmot_nor_tf_keras():
    code = ("import sys, keras_mobile, keras_mobile.quantization; "
            "print(sorted(m for m in ('tensorflow_model_optimization', 'tf_keras') "
            "if m in sys.modules))")
    # tfmot_adapter.tfmot() set TF_USE_LEGACY_KERAS=1 here if an earlier test quantized.
    env = {**{k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"},
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# -- bad input -------------------------------------------------------------------------------

def test_not_a_keras_mobile_model_is_refused():
    with pytest.raises(ValueError, match="Keras 3 functional model.*Received: model of type"):
        quantization.quantize_model("EMO1M")
    twin = quantization.to_tf_keras(tiny_model("MobileNet"))
    with pytest.raises(ValueError, match="already a tf_keras model"):
        quantization.quantize_model(twin)


def test_unsupported_layers_are_named():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 1, name="conv")(inputs)
    lam = keras.layers.Lambda(lambda t: t * 2.0, name="my_lambda")(x)
    with pytest.raises(ValueError, match=r"'my_lambda' \(.*Lambda\) has no tf_keras twin"):
        quantization.quantize_model(keras.Model(inputs, lam))

    class Custom(keras.layers.Layer):
        def call(self, t):
            return t + 1.0

    with pytest.raises(ValueError, match="'my_custom'.*has no tf_keras twin"):
        quantization.quantize_model(keras.Model(inputs, Custom(name="my_custom")(x)))
    norm = keras.layers.LayerNormalization(name="keras_ln")(x)  # use keras_mobile's LayerNorm
    with pytest.raises(ValueError, match="'keras_ln' of type LayerNormalization cannot be "
                                         "quantized"):
        quantization.quantize_model(keras.Model(inputs, norm))
    rms = keras.layers.LayerNormalization(rms_scaling=True, name="rms")(x)
    with pytest.raises(ValueError, match="'rms'.*rms_scaling=True"):
        quantization.to_tf_keras(keras.Model(inputs, rms))


def test_int8_needs_representative_data_even_for_qat(tmp_path):
    qat = quantization.quantize_model(tiny_model("MobileNet"))
    with pytest.raises(ValueError, match="needs representative_data.*quantization-aware model "
                                         "needs it too"):
        tflite.convert(qat, str(tmp_path / "q.tflite"), mode="int8")
    with pytest.raises(ValueError, match="needs representative_data"):
        tflite.convert(tiny_model("MobileNet"), str(tmp_path / "q.tflite"), mode="int8")
    images = np.zeros((1, 32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="A quantization-aware model converts with the ranges "
                                         "it learned: mode='qat_int8'. Received: "
                                         "mode='int8_percentile'"):
        export(qat, str(tmp_path / "q.tflite"), mode="int8_percentile",
               representative_data=images)
    with pytest.raises(ValueError, match="calibration_method='percentile' calibrates a float "
                                         "Keras model; a quantization-aware model converts "
                                         "with the ranges it learned"):
        quantization.post_training_graph(qat, images, calibration_method="percentile")
    assert not os.listdir(tmp_path)


def test_export_modes_fit_the_model(tmp_path):
    """One vocabulary (keras_mobile.export.EXPORT_MODES); each mode states what model it
    takes, and int8_percentile checks every argument before quantizing anything."""
    model = tiny_model("MobileNet")
    images = tflite.synthetic_images(4, TINY["MobileNet"]["input_shape"])
    path = str(tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="mode must be one of float32, float16, dynamic, int8, "
                                         "int8_percentile, qat_int8. Received: mode='int4'"):
        export(model, path, mode="int4")
    with pytest.raises(ValueError, match="mode='qat_int8' converts a quantization-aware model"):
        export(model, path, mode="qat_int8", representative_data=images)
    with pytest.raises(ValueError, match="mode='int8_percentile' needs representative_data"):
        export(model, path, mode="int8_percentile")
    with pytest.raises(ValueError, match="must end with .tflite"):
        export(model, str(tmp_path / "m.tfl"), mode="int8_percentile",
               representative_data=images)
    with pytest.raises(ValueError, match="calibration_method must be one of 'minmax', "
                                         "'percentile'. Received: calibration_method='entropy'"):
        quantization.post_training_graph(model, images, calibration_method="entropy")
    assert quantization.post_training_graph(model, images) is model  # minmax: the converter's
    assert not os.listdir(tmp_path)


# -- depthwise weights ----------------------------------------------------------------------

def _conv_dw_model():
    """conv-BN-ReLU6, depthwise-BN-ReLU6, pool, dense on 8x8 images in [0, 1]."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 1, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU(6.0, name="conv_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU(6.0, name="dw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    images = tflite.synthetic_images(32, (8, 8, 3), seed=5) / 255.0
    recalibrate_batchnorm(model, images)
    return model, images


def test_depthwise_kernels_are_quantized_per_channel_as_tflite_does(tmp_path):
    """tfmot alone quantizes a (3, 3, C, 1) depthwise kernel with one range
    (tensorflow/model-optimization#808); TFLite uses one per channel. Ours matches
    TFLite: the int8 file holds exactly the QAT model's fake-quantized kernel, BN folded."""
    import tensorflow as tf
    import tf_keras

    model, images = _conv_dw_model()
    qat = quantization.quantize_model(model)
    qat.compile(tf_keras.optimizers.SGD(1e-3), "mse")
    qat.train_on_batch(images, np.zeros((32, 3)))  # sets the weight ranges
    wrapper = qat.get_layer("quant_dw")
    weights = {v.name.split("/")[-1]: np.asarray(v) for v in wrapper.weights}
    low, high = weights["depthwise_kernel_min:0"], weights["depthwise_kernel_max:0"]
    assert low.shape == high.shape == (8,)  # tfmot alone: (1,)
    kernel = weights["depthwise_kernel:0"]  # (3, 3, 8, 1)
    fake = tf.quantization.fake_quant_with_min_max_vars_per_channel(
        kernel.reshape(3, 3, 1, 8), low, high, num_bits=8, narrow_range=True).numpy()
    bn = qat.get_layer("quant_dw_bn").layer
    folded = fake * (np.asarray(bn.gamma) / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon))

    report = tflite.convert(qat, str(tmp_path / "dw.tflite"), mode="int8",
                            representative_data=images, tolerance=tflite.Tolerance())
    it = tflite.runtime.interpreter(str(tmp_path / "dw.tflite"))
    (tensor,) = [d for d in it.get_tensor_details() if tuple(d["shape"]) == (1, 3, 3, 8)]
    scales = tensor["quantization_parameters"]["scales"]
    assert scales.shape == (8,)
    stored = it.get_tensor(tensor["index"]).astype("float32") * scales
    np.testing.assert_allclose(stored, folded.reshape(1, 3, 3, 8), rtol=0,
                               atol=1e-6 * np.abs(folded).max())
    assert report.parity.cosine > 0.999, report.parity


# -- range calibration -----------------------------------------------------------------------

def _range_name(variable_name: str) -> str:
    """'quantize_layer_3/quantize_layer_3_min:0' -> 'quantize_layer/quantize_layer_min'
    (tf_keras numbers the input QuantizeLayer per process)."""
    return re.sub(r"quantize_layer_\d+", "quantize_layer", variable_name.removesuffix(":0"))


def _ranges(qat) -> dict:
    return {_range_name(w.name): w.numpy() for w in qat.weights
            if w.name.endswith(("_min:0", "_max:0"))}


def test_calibration_starts_ranges_at_the_float_graphs_min_max():
    """tfmot starts every activation range at [-6, 6] and moves it by a 0.999 moving
    average; calibrated, each is the min/max (0 included) that the float model's
    tensor reaches on the data, and each weight range is its kernel's (per channel)."""
    model, images = _conv_dw_model()
    qat = quantization.quantize_model(model)
    assert _ranges(qat)["quant_conv_relu/output_min"] == -6.0  # tfmot's start
    returned = quantization.calibrate(qat, images)
    ranges = _ranges(qat)
    assert {_range_name(k) for k in returned} == {
        f"{name}_{end}" for name in ("quantize_layer/quantize_layer", "quant_conv_relu/output",
                                     "quant_dw_relu/output", "quant_pool/output",
                                     "quant_logits/post_activation") for end in ("min", "max")}
    assert (ranges["quantize_layer/quantize_layer_min"],
            ranges["quantize_layer/quantize_layer_max"]) == (0.0, images.max())
    for name, wrapper in (("conv_relu", "quant_conv_relu/output"),
                          ("dw_relu", "quant_dw_relu/output"), ("pool", "quant_pool/output"),
                          ("logits", "quant_logits/post_activation")):
        tensor = np.asarray(keras.Model(model.input, model.get_layer(name).output)(images))
        np.testing.assert_allclose(
            [ranges[f"{wrapper}_min"], ranges[f"{wrapper}_max"]],
            [min(tensor.min(), 0.0), max(tensor.max(), 0.0)], rtol=1e-5, atol=1e-6,
            err_msg=name)
    kernel = model.get_layer("conv").kernel.numpy()  # (1, 1, 3, 8): per output channel
    np.testing.assert_allclose(ranges["quant_conv/kernel_max"], np.abs(kernel).max((0, 1, 2)),
                               rtol=1e-6)
    depthwise = model.get_layer("dw").kernel.numpy()  # (3, 3, 8, 1): per channel
    np.testing.assert_allclose(ranges["quant_dw/depthwise_kernel_max"],
                               np.abs(depthwise).max((0, 1, 3)), rtol=1e-6)
    # Calibrated, the fake-quantized model computes the float model's logits to int8 rounding.
    expected, actual = np.asarray(model(images)), np.asarray(qat(images, training=False))
    assert np.abs(expected - actual).max() < 0.02 * np.abs(expected).max()


def test_calibration_leaves_the_weights_file_layout_as_built(tmp_path):
    """A calibrated QAT model saves the same weights file entries as a fresh one, so a
    fresh QAT run's weights load into the model rebuilt from its record (calibration used
    to track each wrapped kernel a second time: 36 more entries here)."""
    import h5py

    model = keras_mobile.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3),
                                     classes=10)
    fresh = quantization.quantize_model(model, logits=True)
    calibrated = quantization.quantize_model(model, logits=True)
    quantization.calibrate(calibrated, np.zeros((1, 32, 32, 3), np.float32), 1)
    entries = []
    for name, qat in (("fresh", fresh), ("calibrated", calibrated)):
        qat.save_weights(str(tmp_path / f"{name}.weights.h5"))
        found = []
        with h5py.File(tmp_path / f"{name}.weights.h5") as f:
            f.visit(found.append)
        entries.append(found)
    assert entries[0] == entries[1]
    fresh.load_weights(str(tmp_path / "calibrated.weights.h5"))
    for a, b in zip(fresh.weights, calibrated.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_calibration_stays_within_tfmots_start_range_unless_unbounded():
    """Ranges tfmot starts at [-6, 6] only tighten (a wider tensor stays clipped at 6,
    as tfmot clips it); the input's (tfmot: [0, 0]) and limit=None follow the data."""
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Rescaling(0.5, name="half")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))
    images = tflite.synthetic_images(8, (4, 4, 3), seed=1)  # [0, 255]
    qat = quantization.quantize_model(model, representative_data=images)
    ranges = _ranges(qat)
    assert ranges["quantize_layer/quantize_layer_max"] == images.max() > 200
    assert (ranges["quant_half/output_min"], ranges["quant_half/output_max"]) == (0.0, 6.0)
    quantization.calibrate(qat, images, limit=None)
    ranges = _ranges(qat)
    assert (ranges["quant_half/output_min"], ranges["quant_half/output_max"]) == (
        0.0, images.max() / 2)


def test_calibration_to_percentiles_leaves_outliers_out():
    """percentile=99: each range from the 1st to the 99th percentile of its tensor's
    values, to within one histogram bin, where min/max spans two outliers; the input's
    range stays the data's min/max."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1.0, name="same")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))
    images = np.random.default_rng(0).normal(size=(64, 8, 8, 1)).astype(np.float32)
    images[0, 0, 0, 0], images[1, 0, 0, 0] = 50.0, -40.0
    qat = quantization.quantize_model(model)
    quantization.calibrate(qat, images, 64, limit=None)
    ranges = _ranges(qat)
    assert (ranges["quant_same/output_min"], ranges["quant_same/output_max"]) == (-40.0, 50.0)
    quantization.calibrate(qat, images, 64, limit=None, percentile=99.0)
    ranges = _ranges(qat)
    step = 90.0 / calibration.BINS
    assert abs(ranges["quant_same/output_max"] - np.percentile(images, 99)) <= step
    assert abs(ranges["quant_same/output_min"] - np.percentile(images, 1)) <= step
    assert 2.0 < ranges["quant_same/output_max"] < 2.7  # a standard normal's 99th: 2.33
    assert (ranges["quantize_layer/quantize_layer_min"],
            ranges["quantize_layer/quantize_layer_max"]) == (-40.0, 50.0)


def test_calibration_bad_input_fails_before_any_work():
    model, images = _conv_dw_model()
    with pytest.raises(ValueError, match=r"representative_data must hold images of the model's "
                                         r"input shape \(8, 8, 3\)\. Received images of shape "
                                         r"\(4, 4, 3\)"):
        quantization.quantize_model(model, representative_data=images[:, :4, :4])
    with pytest.raises(ValueError, match="num_calibration_samples must be a positive int. "
                                         "Received: num_calibration_samples=0"):
        quantization.quantize_model(model, representative_data=images, num_calibration_samples=0)
    qat = quantization.quantize_model(model)
    for percentile in (50, 100.5, "99.9"):
        with pytest.raises(ValueError, match=r"percentile must be None or a number in "
                                             r"\(50, 100\]\. Received: percentile="):
            quantization.calibrate(qat, images, percentile=percentile)
    twin = quantization.to_tf_keras(model)
    with pytest.raises(ValueError, match="has no activation ranges to calibrate"):
        quantization.calibrate(twin, images)


def test_qat_model_saves_and_loads_as_hdf5(tmp_path):
    """A QAT EMO (LayerNorm, window attention with its own internal ranges) round-trips
    through HDF5 in ``quantize_scope``, learned ranges included."""
    import tf_keras

    qat = quantization.quantize_model(tiny_model("EMO1M", classes=3), logits=True)
    images = tflite.synthetic_images(8, TINY["EMO1M"]["input_shape"], seed=1)
    qat(images, training=True)  # moves every range off its initial value
    internal = {w.name: float(w.numpy()) for w in qat.weights
                if "_attn/" in w.name and "_post_activation_" in w.name}
    kinds = {name.split("/")[1].split("_post_activation")[0] for name in internal}
    assert kinds == {"query", "key", "logits", "value"}, internal
    assert all(abs(abs(v) - 6.0) > 1e-4 for v in internal.values()), internal
    qat.save(tmp_path / "qat.h5")
    with quantization.quantize_scope():
        loaded = tf_keras.models.load_model(tmp_path / "qat.h5")
    assert len(loaded.weights) == len(qat.weights)
    for saved, restored in zip(qat.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.name)
    np.testing.assert_array_equal(loaded(images), qat(images))


# -- QAT -> int8 TFLite ---------------------------------------------------------------------

def _qat_to_int8(name, tmp_path, *, float_epochs=3, qat_epochs=1, count=256, logits=True):
    """Train a tiny float model, fine-tune it with QAT, convert to int8; return the
    conversion report (parity measured on the held-out images)."""
    import tf_keras

    size = TINY[name]["input_shape"][0]
    images, labels = _dataset(count, size, seed=3)
    train, test = slice(0, count * 3 // 4), slice(count * 3 // 4, None)
    model = tiny_model(name, classes=3)
    model.compile(keras.optimizers.Adam(5e-3), "sparse_categorical_crossentropy")
    model.fit(images[train], labels[train], epochs=float_epochs, batch_size=32, verbose=0)
    # A few steps leave BatchNorm's moving statistics (momentum 0.99-0.999) far from
    # the data's: measure them, as a longer training run would have.
    recalibrate_batchnorm(model, images[train])
    qat = quantization.quantize_model(model, logits=logits, representative_data=images[train])
    # Calibrated, before any fine-tune, the QAT model predicts what the float model does
    # (top-1 agreement on 64 images: 0.98 MobileNeXt, 1.0 the others; with tfmot's
    # [-6, 6] start ranges 0.33-0.39, chance for 3 classes).
    agreement = np.mean(np.argmax(qat(images[test], training=False), -1)
                        == np.argmax(model(images[test]), -1))
    assert agreement >= 0.9, agreement
    qat.compile(tf_keras.optimizers.Adam(5e-4),
                tf_keras.losses.SparseCategoricalCrossentropy(from_logits=logits))
    qat.fit(images[train], labels[train], epochs=qat_epochs, batch_size=32, verbose=0)
    report = tflite.convert(qat, str(tmp_path / "qat.tflite"), mode="int8",
                            representative_data=images[train], inference_input_type="int8",
                            inference_output_type="int8", check_data=images[test],
                            num_check_samples=count // 4, tolerance=tflite.Tolerance())
    return report


def _assert_int8_deployable(report, name, path):
    assert (report.input_type, report.output_type) == ("int8", "int8")
    assert report.max_rank <= 4 and report.dynamic_tensors == 0, report
    for op in ("HARD_SWISH", "GELU"):  # rewritten: XNNPACK runs neither in int8
        assert op not in report.ops, report
    # Every family in one XNNPACK partition: what XNNPACK cannot run in int8 computes in
    # float32 inside it (convert's denylisted_ops="xnnpack": EMO's attention softmax and
    # LayerNorm RSQRT / epsilon ADD); the conv families need no float op at all.
    assert report.xnnpack_partitions == 1 and report.fully_delegated, report
    if name in CONV_FAMILIES:  # the classifier's softmax dropped (logits=True)
        assert "SOFTMAX" not in report.ops and report.float_ops == 0, report
    graph = parse_subgraph(read_model(path)[0])
    floats = {op.name for op in graph.ops if op.outputs[0].dtype == "FLOAT32"} - {"DEQUANTIZE"}
    assert floats <= {"SOFTMAX", "RSQRT", "ADD", "QUANTIZE"}, floats
    # XNNPACK runs an int8 BATCH_MATMUL only when its right operand has zero point 0
    # (LiteRT xnnpack_delegate.cc, VisitBatchMatMulNode). The attention's keys and values
    # are quantized symmetrically for it (so the matmuls stay int8), and the float
    # softmax's output is quantized on TFLite's softmax grid for A.V.
    matmuls = [op for op in graph.ops if op.name == "BATCH_MATMUL"]
    assert len(matmuls) == (2 * report.ops.get("SOFTMAX", 0))
    for op in matmuls:
        assert op.inputs[1].dtype == "INT8" and op.inputs[1].quantization[1] == 0, op.inputs[1]
    for op in graph.ops:
        if op.name == "SOFTMAX":
            (quantize,) = graph.consumers(op.outputs[0].index)
            assert quantize.name == "QUANTIZE", quantize
            assert quantize.outputs[0].quantization == (1 / 256, -128), quantize.outputs[0]
            assert [c.name for c in graph.consumers(quantize.outputs[0].index)] == \
                ["BATCH_MATMUL"]


@pytest.mark.parametrize("name", sorted(TINY))
def test_qat_int8_end_to_end(name, tmp_path):
    """Per family: train, QAT fine-tune (6 steps), full int8 with int8 I/O in LiteRT."""
    report = _qat_to_int8(name, tmp_path)
    _assert_int8_deployable(report, name, tmp_path / "qat.tflite")
    # The int8 graph computes what the fake-quantized model computes, up to rounding
    # (int8 rounds inside output-only layers, which QAT computes in float; a tiny net
    # trained 3 epochs amplifies that). Measured on 64 images (cosine / top-1 agreement):
    # MobileNet 0.95/98%, MobileNetV2 0.99/97%, MobileNetV3Small 0.998/100%,
    # MobileNeXt 0.88/84%, EfficientNetB0 0.999/98%, EMO1M 0.96/97%.
    assert report.parity.cosine >= 0.85, report.parity
    assert report.parity.top1_agreement >= 0.8, report.parity
    assert report.parity.top1_samples >= 48, report.parity
