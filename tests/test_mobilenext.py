"""MobileNeXt: parameter counts, the channel plan of specs/mobilenext.md §2, the
identity tensor multiplier, the sandglass EfficientNet-B0, and exact equivalence
with the official PyTorch ``MXNet`` through the reference data
(tests/data/reference/mobilenext_1.0_seed2026.npz)."""

import re

import keras
import numpy as np
import pytest
from conftest import load_reference, nhwc, state_dict

from keras_mobile.layers import PartialAdd
from keras_mobile.models import mobilenext
from keras_mobile.models.mobilenext import STAGES, EfficientNetB0Sandglass, MobileNeXt, _mnext_plan

PARAMS = {0.35: 1_913_976, 0.5: 2_152_304, 0.75: 2_766_168, 1.0: 3_535_416, 1.4: 6_126_168}
B0_PARAMS = 3_937_011 - 2_560  # the official count less the dead, never-called _bn1 (1280)

# specs/mobilenext.md §2, "Channel plan for every width": stem | blocks as in>hidden>out
# (R: residual) | fc in. Columns group the blocks below; repeats share their numbers.
COLUMNS = (("block1a",), ("block2a",), ("block3a",), ("block3b", "block3c"), ("block4a",),
           ("block4b", "block4c"), ("block5a",), ("block5b", "block5c", "block5d"),
           ("block6a",), ("block6b", "block6c", "block6d"), ("block7a",),
           ("block7b", "block7c"), ("block8a",))
PLAN = {
    0.35: "16 | 16>8>32 | 32>16>48 | 48>16>64 | 64>16>64R | 64>32>104 | 104>32>104R | "
          "104>32>136 | 136>32>136R | 136>32>200 | 200>32>200R | 200>64>336 | 336>56>336R | "
          "336>208>1280 | 1280",
    0.5: "16 | 16>8>48 | 48>16>72 | 72>16>96 | 96>16>96R | 96>32>144 | 144>24>144R | "
         "144>32>192 | 192>32>192R | 192>48>288 | 288>48>288R | 288>80>480 | 480>80>480R | "
         "480>208>1280 | 1280",
    0.75: "24 | 24>12>72 | 72>32>112 | 112>32>144 | 144>24>144R | 144>48>216 | 216>36>216R | "
          "216>48>288 | 288>48>288R | 288>80>432 | 432>72>432R | 432>128>720 | 720>120>720R | "
          "720>208>1280 | 1280",
    1.0: "32 | 32>16>96 | 96>32>144 | 144>32>192 | 192>32>192R | 192>48>288 | 288>48>288R | "
         "288>64>384 | 384>64>384R | 384>96>576 | 576>96>576R | 576>160>960 | 960>160>960R | "
         "960>208>1280 | 1280",
    1.4: "48 | 48>24>136 | 136>32>200 | 200>48>272 | 272>48>272R | 272>64>400 | 400>64>400R | "
         "400>96>536 | 536>96>536R | 536>128>808 | 808>128>808R | 808>224>1344 | "
         "1344>224>1344R | 1344>304>1792 | 1792",
}
# Block shapes (spec §1.3 / §6): (first depthwise, stride of the last depthwise or 0 if
# none, residual). A: t == 2; B: no depthwise; C: stride-2 transition; D: repeat;
# K: a keep_3x3 block (case D without the residual).
SHAPES = {"A": (True, 2, False), "A1": (True, 1, False), "B": (False, 0, False),
          "C": (False, 2, False), "D": (True, 1, True), "K": (True, 1, False)}
MNEXT_SHAPES = "A K C D D C D D B D D D C D D D B D D K"
B0_SHAPES = "A1 C C D D C D D B D D D C D D D B D D B"

_MODELS = {}



# An independent derivation of the official key order, walking the block plan: the test
# oracle for mobilenext.official_module (which keras_mobile.weights uses).
_BN_VARIABLES = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                 ("running_var", "moving_variance"), ("num_batches_tracked", None))


def official_mapping(model) -> list[tuple[str, str | None, str]]:
    """The official ``MXNet`` state dict, key by key, onto a :func:`MobileNeXt` model.

    Walks the same plan as the builder (widths read back from ``model``, so any
    alpha and identity multiplier) and returns ``(torch_key, keras_path, kind)``
    in the official key order. ``kind`` says how to convert the tensor:
    "conv" (OIHW -> HWIO, ``transpose(2, 3, 1, 0)``), "depthwise" ((C, 1, k, k)
    -> (k, k, C, 1), ``transpose(2, 3, 0, 1)``), "dense" (``.T``), "vector" (as
    is) or "skip" (no Keras variable, path None: ``num_batches_tracked``, and the
    classifier when the model has no ``predictions`` layer).

    Example:
        >>> for key, path, kind in official_mapping(model): ...
    """
    mapping = []

    def conv_bn_keys(container, position, scope, kind):  # conv at position, its BN next
        mapping.append((f"{container}.{position}.weight", f"{scope}_conv/kernel", kind))
        for torch_name, keras_name in _BN_VARIABLES:
            path = f"{scope}_bn/{keras_name}" if keras_name else None
            mapping.append((f"{container}.{position + 1}.{torch_name}", path,
                            "vector" if keras_name else "skip"))

    stem = model.get_layer("stem_conv").filters
    widths = [model.get_layer(f"block{s}a_expand_conv").filters
              for s in range(1, len(STAGES) + 1)]
    conv_bn_keys("features.0", 0, "stem", "conv")
    for index, block in enumerate(_mnext_plan(stem, widths), start=1):
        # SGBlock.conv: each conv is followed by its BN and, if activated, a ReLU6.
        parts = [("dw1", "depthwise", True)] if block.first_dw else []
        parts += [("reduce", "conv", False), ("expand", "conv", True)]
        parts += [("dw2", "depthwise", False)] if block.last_dw else []
        position = 0
        for part, kind, activated in parts:
            conv_bn_keys(f"features.{index}.conv", position, f"{block.name}_{part}", kind)
            position += 3 if activated else 2
    top = any(layer.name == "predictions" for layer in model.layers)
    mapping.append(("classifier.1.weight", "predictions/kernel" if top else None,
                    "dense" if top else "skip"))
    mapping.append(("classifier.1.bias", "predictions/bias" if top else None,
                    "vector" if top else "skip"))
    return mapping

def _mobilenext(alpha):
    """One MobileNeXt per width for the whole module (logits out, no preprocessing)."""
    if alpha not in _MODELS:
        _MODELS[alpha] = MobileNeXt(alpha=alpha, weights=None, include_preprocessing=False,
                                    classifier_activation=None)
    return _MODELS[alpha]


def _b0():
    if "b0" not in _MODELS:
        _MODELS["b0"] = EfficientNetB0Sandglass()
    return _MODELS["b0"]


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _blocks(model):
    """Block scopes in computation order."""
    names = [m.group(1) for layer in model.layers
             if (m := re.match(r"(block\d+[a-z])_", layer.name))]
    return list(dict.fromkeys(names))


def _block_output(model, block):
    """The layer whose output is the block's output: the last one in its scope."""
    return [layer for layer in model.layers if layer.name.startswith(f"{block}_")][-1]


def _names(model):
    return {layer.name for layer in model.layers}


def _shape(model, block):
    names = _names(model)
    dw2 = f"{block}_dw2_conv"
    return (f"{block}_dw1_conv" in names,
            model.get_layer(dw2).strides[0] if dw2 in names else 0,
            f"{block}_add" in names)


# ---------------------------------------------------------------------------------------------
# Structure


@pytest.mark.parametrize("alpha", sorted(PARAMS))
def test_params_and_channel_plan(alpha):
    model = _mobilenext(alpha)
    assert _trainable(model) == PARAMS[alpha]
    stem, *columns, fc_in = PLAN[alpha].split(" | ")
    assert model.get_layer("stem_conv").filters == int(stem)
    for blocks, plan in zip(COLUMNS, columns, strict=True):
        inp, hidden, out = (int(v) for v in plan.rstrip("R").split(">"))
        for block in blocks:
            reduce = model.get_layer(f"{block}_reduce_conv")
            got = (reduce.input.shape[-1], reduce.filters,
                   model.get_layer(f"{block}_expand_conv").filters,
                   f"{block}_add" in _names(model))
            assert got == (inp, hidden, out, plan.endswith("R")), (alpha, block)
    assert model.get_layer("predictions").kernel.shape == (int(fc_in), 1000)
    assert _blocks(model) == [b for blocks in COLUMNS for b in blocks]
    assert [_shape(model, b) for b in _blocks(model)] == [
        SHAPES[s] for s in MNEXT_SHAPES.split()]


def test_layout_details():
    model = _mobilenext(1.0)
    # The 12 residual blocks of spec §1.4 (features 4, 5, 7, 8, 10-12, 14-16, 18, 19).
    residual = [i for i, b in enumerate(_blocks(model), start=1) if f"{b}_add" in _names(model)]
    assert residual == [4, 5, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19]
    assert model.get_layer("block8a_reduce_conv").filters == 208
    assert _mobilenext(1.4).get_layer("block8a_reduce_conv").filters == 304
    # Symmetric padding: an explicit pad before every stride-2 conv; PyTorch BN epsilon.
    assert model.get_layer("stem_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("block3a_dw2_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("block3a_reduce_bn").epsilon == 1e-5
    assert model.get_layer("block3a_reduce_bn").momentum == 0.9
    assert model.get_layer("top_dropout").rate == 0.2
    assert [layer.name for layer in model.layers if re.fullmatch(r"P\d", layer.name)] == [
        "P2", "P3", "P4", "P5"]
    assert [model.get_layer(f"P{level}").output.shape[1] for level in (2, 3, 4, 5)] == [
        56, 28, 14, 7]


def test_efficientnet_b0_sandglass():
    model = _b0()
    assert _trainable(model) == B0_PARAMS
    blocks = _blocks(model)
    assert [_shape(model, b) for b in blocks] == [SHAPES[s] for s in B0_SHAPES.split()]
    # Hidden width make_divisible(in // t, 2); SE width int(out / t * 0.25) (spec §6).
    stage_a = [f"block{s}a" for s in range(1, 9)]
    assert [model.get_layer(f"{b}_reduce_conv").filters for b in stage_a] == [
        16, 16, 24, 32, 48, 64, 96, 160]
    assert [model.get_layer(f"{b}_se_reduce").filters for b in stage_a] == [
        12, 6, 8, 12, 16, 24, 40, 53]
    assert [model.get_layer(f"{b}_dw2_conv").kernel_size[0] for b in stage_a
            if f"{b}_dw2_conv" in _names(model)] == [3, 3, 5, 3, 5]
    assert model.get_layer("block3a_dw2_conv").padding == "same"  # TF SAME, no pad layer
    assert "block3a_dw2_pad" not in _names(model)
    assert model.get_layer("stem_bn").epsilon == 1e-3
    assert model.get_layer("stem_act").get_config()["activation"] == "silu"
    assert model.get_layer("block3b_drop_path").rate == pytest.approx(0.2 * 3 / 20)
    assert model.get_layer("predictions").kernel.shape == (1280, 1000)
    probs = model(np.zeros((1, 224, 224, 3), "float32"), training=False)
    assert probs.shape == (1, 1000)
    assert float(np.sum(probs)) == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------------------------------
# Identity tensor multiplier and argument checks


def test_identity_channels_rule():
    # floor(C * m) equals the official floor(C / identity_div) for m = 1 / div.
    for div in range(1, 9):
        assert [mobilenext._identity_channels(c, 1 / div) for c in range(1, 2049)] == [
            c // div for c in range(1, 2049)]


def test_half_identity_adds_first_channels():
    model = MobileNeXt(alpha=1.0, identity_multiplier=0.5, weights=None, include_top=False,
                       input_shape=(64, 64, 3), include_preprocessing=False)
    adds = {layer.name: layer for layer in model.layers if layer.name.endswith("_add")}
    assert len(adds) == 12
    for layer in adds.values():
        assert isinstance(layer, PartialAdd)
        assert layer.channels == layer.output.shape[-1] // 2
    # block3b: output = branch + [shortcut[..., :96], 0]; the shortcut is block3a's output.
    rng = np.random.default_rng(0)
    for layer in model.layers:  # BN offsets keep the signal from fading at random init
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.beta.assign(rng.normal(0.0, 0.5, layer.beta.shape))
    probe = keras.Model(model.input, [_block_output(model, "block3a").output,
                                      model.get_layer("block3b_dw2_bn").output,
                                      adds["block3b_add"].output])
    x = rng.normal(size=(1, 64, 64, 3)).astype("float32")
    shortcut, branch, out = (np.asarray(t) for t in probe(x, training=False))
    assert shortcut.shape[-1] == 192
    assert np.abs(shortcut).mean() > 0.1 and np.abs(branch).mean() > 0.1
    expected = branch.copy()
    expected[..., :96] += shortcut[..., :96]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("value, error", [(0, ValueError), (1.5, ValueError), (-0.5, ValueError),
                                          ("a", TypeError), (True, TypeError)])
def test_bad_identity_multiplier(value, error):
    with pytest.raises(error, match="identity_multiplier"):
        MobileNeXt(identity_multiplier=value, weights=None)


@pytest.mark.parametrize("kwargs", [{"alpha": 0.75}, {"identity_multiplier": 1 / 3},
                                    {"input_shape": (160, 160, 3)}])
def test_imagenet_weights_only_where_they_exist(kwargs):
    with pytest.raises(ValueError, match="alpha 1.0 with identity_multiplier"):
        MobileNeXt(weights="imagenet", **kwargs)


def test_b0_sandglass_has_no_imagenet_weights():
    with pytest.raises(ValueError, match="no ImageNet weights"):
        EfficientNetB0Sandglass(weights="imagenet")
    with pytest.raises(ValueError, match="drop_connect_rate"):
        EfficientNetB0Sandglass(drop_connect_rate=1.0)


# ---------------------------------------------------------------------------------------------
# Equivalence with the official PyTorch model

_CONVERT = {  # the "kind" of official_mapping -> PyTorch layout to Keras layout
    "conv": lambda w: w.transpose(2, 3, 1, 0),
    "depthwise": lambda w: w.transpose(2, 3, 0, 1),
    "dense": lambda w: w.T,
    "vector": lambda w: w,
}


def _load_state_dict(model, official, mapping):
    """Assign every mapped tensor of the ``official`` state dict to the Keras variable at its
    path."""
    variables = {v.path: v for v in model.variables}
    for key, path, kind in mapping:
        if kind != "skip":
            variables[path].assign(_CONVERT[kind](official[key]))


@pytest.fixture(scope="module")
def reference():
    return load_reference("mobilenext_1.0_seed2026.npz")


def test_official_mapping_covers_state_dict_and_model(reference):
    model = _mobilenext(1.0)
    mapping = official_mapping(model)
    assert [key for key, _, _ in mapping] == [key for key, _, _ in reference["listing"]]  # order
    variables = {v.path: v for v in model.variables}
    for (key, path, kind), (_, shape, _) in zip(mapping, reference["listing"], strict=True):
        if kind != "skip":
            assert _CONVERT[kind](np.empty(shape)).shape == variables[path].shape, key
    paths = [path for _, path, kind in mapping if kind != "skip"]
    assert sorted(paths) == sorted(w.path for w in model.weights)  # each exactly once
    assert [kind for key, _, kind in mapping if key.endswith("num_batches_tracked")] == [
        "skip"] * 74
    kinds = [kind for _, _, kind in mapping]
    # 74 convs (stem + 40 pointwise, 33 depthwise), 1 Linear, 446 entries (spec §3).
    assert (kinds.count("conv"), kinds.count("depthwise"), kinds.count("dense")) == (41, 33, 1)
    assert len(mapping) == 446
    headless = official_mapping(MobileNeXt(alpha=0.35, weights=None, include_top=False))
    assert headless[-2:] == [("classifier.1.weight", None, "skip"),
                             ("classifier.1.bias", None, "skip")]
    assert [key for key, _, _ in headless] == [key for key, _, _ in mapping]


@pytest.mark.parametrize("alpha", [1.0, 0.05])
def test_official_module_agrees_with_mapping(alpha):
    # At alpha 0.05 stage widths collide (192 and 288 both become 16), so block4a turns
    # into case D (residual, no stride) as in the official code: both views must follow.
    model = _mobilenext(alpha)
    shapes = [_shape(model, b) for b in _blocks(model)]
    assert (shapes == [SHAPES[s] for s in MNEXT_SHAPES.split()]) == (alpha == 1.0)
    assert (_shape(model, "block4a") == SHAPES["D"]) == (alpha == 0.05)
    mapping = official_mapping(model)
    assert sorted(p for _, p, kind in mapping if kind != "skip") == sorted(
        w.path for w in model.weights)
    for key, path, kind in mapping:
        if kind != "skip":
            module = mobilenext.official_module(model.get_layer(path.split("/")[0]))
            assert key.rsplit(".", 1)[0] == module, (key, path)
    assert [layer.name for layer in model.layers
            if not layer.weights and mobilenext.official_module(layer)] == []


def _max_logit_error(model, reference):
    logits = np.asarray(model(nhwc(reference["input_224"]), training=False))
    return np.abs(logits - reference["logits_224"]).max()


def test_matches_official_model(reference):
    official = reference["logits_224"]
    assert np.abs(official[0] - official[1]).max() > 0.5  # the two samples' logits differ
    model = _mobilenext(1.0)
    _load_state_dict(model, state_dict(reference), official_mapping(model))
    assert _max_logit_error(model, reference) <= 5e-5  # measured 1.5e-5 (1.9e-5 without oneDNN)


def test_logit_check_sees_keras_default_bn_epsilon(reference):
    """Negative control: Keras' default BN epsilon (1e-3, not PyTorch's 1e-5) moves the
    logits by ~0.3."""
    model = _mobilenext(1.0)
    _load_state_dict(model, state_dict(reference), official_mapping(model))
    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert {layer.epsilon for layer in norms} == {1e-5}
    for layer in norms:
        layer.epsilon = 1e-3
    try:
        assert _max_logit_error(model, reference) > 1e-2  # 200x the tolerance
    finally:
        for layer in norms:
            layer.epsilon = 1e-5
