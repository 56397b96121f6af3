"""EMO equals the official implementation (specs/emo.md, reference/emo_1m.npz)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import nhwc, state_dict

import keras_mobile
from keras_mobile.layers import WindowAttention, window_partition, window_reverse
from keras_mobile.weights import load_official_state_dict

OFFICIAL_PARAMS = {"EMO1M": 1_361_168, "EMO2M": 2_377_472, "EMO5M": 5_108_848,
                   "EMO6M": 6_168_496}
# specs/emo.md §7: conv+linear+matmul MACs, fvcore totals, attention matmul, norms (M).
OFFICIAL_MACS = {"EMO1M": (255.24, 260.84, 12.37), "EMO2M": (431.92, 439.36, 20.36),
                 "EMO5M": (892.22, 902.58, 27.35), "EMO6M": (950.25, 960.75, 27.66)}


@pytest.fixture(scope="module")
def emo_1m(emo_1m_reference):
    model = keras_mobile.EMO1M(weights=None, include_preprocessing=False,
                               classifier_activation=None)
    load_official_state_dict(model, state_dict(emo_1m_reference))
    return model


def test_logits_and_stage_maps_equal_official(emo_1m, emo_1m_reference):
    ref = emo_1m_reference
    names = ["stem_project_conv", "P2", "P3", "P4", "P5", "avg_pool", "predictions"]
    probe = keras.Model(emo_1m.input, [emo_1m.get_layer(n).output for n in names])
    outs = probe(nhwc(ref["input_224"]), training=False)
    for out, key in zip(outs[:5], ["stage0", "stage1", "stage2", "stage3", "stage4"], strict=True):
        assert np.abs(out.numpy() - nhwc(ref[key])).max() <= 5e-5, key
    assert np.abs(outs[5].numpy() - ref["pre_logits"]).max() <= 5e-5
    assert np.abs(outs[6].numpy() - ref["logits_224"]).max() <= 2e-5


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_official_params_and_macs(name):
    profile = keras_mobile.profile(keras_mobile.get_model(name, weights=None))
    macs, fvcore, matmul = OFFICIAL_MACS[name]
    assert profile.trainable_params == OFFICIAL_PARAMS[name]
    assert round(profile.macs / 1e6, 2) == macs
    assert round(profile.fvcore_flops / 1e6, 2) == fvcore
    assert round(profile.macs_by_type["attention_matmul"] / 1e6, 2) == matmul


def _official_window_attention(qk, value, heads, ws):
    """The official einops recipe in numpy (NCHW, rank-6 reshapes): pad, interleaved windows."""
    b, c2, h, w = qk.shape
    pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
    qk = np.pad(qk, ((0, 0), (0, 0), (0, pad_b), (0, pad_r)))
    value = np.pad(value, ((0, 0), (0, 0), (0, pad_b), (0, pad_r)))
    n1, n2 = (h + pad_b) // ws, (w + pad_r) // ws

    def windows(x):  # 'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1'
        c = x.shape[1]
        x = x.reshape(b, c, ws, n1, ws, n2).transpose(0, 3, 5, 1, 2, 4)
        return x.reshape(b * n1 * n2, c, ws * ws)

    qk, v = windows(qk), windows(value)
    d = c2 // 2 // heads
    q = qk[:, : c2 // 2].reshape(-1, heads, d, ws * ws).transpose(0, 1, 3, 2)
    k = qk[:, c2 // 2:].reshape(-1, heads, d, ws * ws).transpose(0, 1, 3, 2)
    v = v.reshape(-1, heads, v.shape[1] // heads, ws * ws).transpose(0, 1, 3, 2)
    a = q @ k.transpose(0, 1, 3, 2) * d ** -0.5
    a = np.exp(a - a.max(-1, keepdims=True))
    y = (a / a.sum(-1, keepdims=True)) @ v  # (bw, heads, T, dv)
    cv = y.shape[1] * y.shape[3]
    y = y.transpose(0, 1, 3, 2).reshape(b, n1, n2, cv, ws, ws).transpose(0, 3, 4, 1, 5, 2)
    return y.reshape(b, cv, n1 * ws, n2 * ws)[:, :, :h, :w]


@pytest.mark.parametrize("size", [13, 14, 16, 8])
def test_window_attention_with_padding_matches_official_recipe(size):
    """Non-multiple-of-7 maps are zero-padded right/bottom and attend unmasked."""
    rng = np.random.default_rng(size)
    qk = rng.normal(size=(2, 40, size, size)).astype("float32")
    value = rng.normal(size=(2, 24, size, size)).astype("float32")
    expected = _official_window_attention(qk, value, heads=4, ws=7)
    inputs = [keras.Input((size, size, 40)), keras.Input((size, size, 24))]
    n = -(-size // 7) * 7 - size
    padded = [keras.layers.ZeroPadding2D(((0, n), (0, n)))(t) for t in inputs]
    y = WindowAttention(4, 7)(padded)
    y = keras.layers.Cropping2D(((0, n), (0, n)))(y)
    got = keras.Model(inputs, y)([nhwc(qk), nhwc(value)]).numpy()
    assert np.abs(got - nhwc(expected)).max() < 1e-5


def test_window_partition_is_interleaved_and_reversible():
    x = np.arange(1 * 14 * 21 * 1, dtype="float32").reshape(1, 14, 21, 1)
    windows = window_partition(tf.constant(x), (2, 3)).numpy()
    assert windows.shape == (6, 49, 1)
    # window (0, 0) holds rows 0, 2, 4, ... and columns 0, 3, 6, ...
    assert sorted(windows[0, :, 0]) == sorted(x[0, ::2, ::3, 0].ravel())
    assert np.array_equal(window_reverse(tf.constant(windows), (2, 3), (14, 21)).numpy(), x)


def test_resolution_200_pads_stage3_and_keeps_params():
    model = keras_mobile.EMO1M(weights=None, input_shape=(200, 200, 3))
    assert model.get_layer("block3b_attn_pad").output.shape[1:3] == (14, 14)
    assert model.get_layer("P4").output.shape[1:3] == (13, 13)
    assert keras_mobile.profile(model).trainable_params == OFFICIAL_PARAMS["EMO1M"]
    assert np.isfinite(model.predict(np.zeros((1, 200, 200, 3)), verbose=0)).all()


def test_attn_pre_false_changes_order_and_flops():
    """attn_pre=False (the paper's order) expands before attention: 460.20M fvcore FLOPs for
    EMO-2M (specs/emo.md §7) at identical parameters."""
    profile = keras_mobile.profile(keras_mobile.EMO2M(weights=None, attn_pre=False))
    assert profile.trainable_params == OFFICIAL_PARAMS["EMO2M"]
    assert round(profile.fvcore_flops / 1e6, 2) == 460.20
    assert round(profile.macs_by_type["attention_matmul"] / 1e6, 2) == 41.20


def test_window_size_is_free_and_global_window():
    m10 = keras_mobile.EMO5M(weights=None, window_size=10)
    m0 = keras_mobile.EMO5M(weights=None, window_size=0)
    assert m10.count_params() == m0.count_params()
    assert m10.get_layer("block3b_attn_pad").output.shape[1:3] == (20, 20)
    assert "block3b_attn_pad" not in [layer.name for layer in m0.layers]
