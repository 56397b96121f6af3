"""EMO equals the official implementation (specs/emo.md; official logits in
tests/data/reference/emo_1m_seed2026.npz)."""

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
    """EMO-1M with the reference weights at an input size, built once per size."""
    models = {}

    def build(size):
        if size not in models:
            models[size] = keras_mobile.EMO1M(weights=None, include_preprocessing=False,
                                              classifier_activation=None,
                                              input_shape=(size, size, 3))
            load_official_state_dict(models[size], state_dict(emo_1m_reference))
        return models[size]

    return build


def _max_logit_error(model, ref, size):
    logits = model(nhwc(ref[f"input_{size}"]), training=False).numpy()
    return np.abs(logits - ref[f"logits_{size}"]).max()


@pytest.mark.parametrize("size", [224, 200])  # 200 px: stage 3's 13x13 maps pad to 14x14
def test_logits_equal_official(emo_1m, emo_1m_reference, size):
    official = emo_1m_reference[f"logits_{size}"]
    assert np.abs(official[0] - official[1]).max() > 1  # the two samples' logits differ
    assert _max_logit_error(emo_1m(size), emo_1m_reference, size) <= 2e-5  # measured 1.2e-5


def test_logit_check_sees_one_wrong_bn_statistic(emo_1m, emo_1m_reference):
    """Negative control: 1% off one channel's running variance moves the logits by ~3e-3."""
    sd = state_dict(emo_1m_reference)
    key = "stage3.0.conv_local.norm.running_var"
    wrong = sd[key].copy()
    wrong[0] *= 1.01
    model = emo_1m(224)
    load_official_state_dict(model, {**sd, key: wrong})
    try:
        assert _max_logit_error(model, emo_1m_reference, 224) > 1e-3  # 50x the tolerance
    finally:
        load_official_state_dict(model, sd)


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


# Table 13 variants (no official code): exact counts of the chosen configuration (stem 32,
# window 7, attn_pre=True; keras_mobile/models/emo.py VARIANTS) against Table 14.
TABLE14 = {"EMO10M": (10_247_240, 1_754_579_776, "10.2", 1874e6),
           "EMO20M": (20_546_056, 3_633_408_832, "20.5", 3808e6)}


@pytest.mark.parametrize("name", sorted(TABLE14))
def test_table13_variants_params_and_flops(name):
    params, flops, paper_params, paper_flops = TABLE14[name]
    profile = keras_mobile.profile(getattr(keras_mobile, name)(weights=None))
    assert profile.trainable_params == params
    assert profile.fvcore_flops == flops
    assert f"{params // 100_000 / 10:.1f}" == paper_params  # the paper truncates
    assert -0.07 < flops / paper_flops - 1 < 0  # remaining gap: -6.4% (10M), -4.6% (20M)
