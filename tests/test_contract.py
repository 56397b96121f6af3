"""One contract over the registry: every registered model is tested automatically."""

import inspect
import json
import re

import numpy as np
import pytest
from golden.manifest import GOLDEN, differences, manifest, measures, readme_table, render_table

import keras_mobile
from keras_mobile.registry import families, get_entry, tiny_configs

NAMES = keras_mobile.list_models()
GOLDEN_MODELS = json.load(open(GOLDEN))
KERAS_APPLICATIONS_ARGS = ["include_top", "weights", "input_tensor", "input_shape", "pooling",
                           "classes", "classifier_activation", "name", "include_preprocessing"]
NAME = re.compile(r"^(input|rescaling|avg_pool|max_pool|top_dropout|predictions|logits|flatten"
                  r"|P[2-5]|(stem|top|block[1-9][a-z])(_[a-z0-9]+)+)$")


def test_registry_is_complete():
    assert len(NAMES) >= 20
    assert set(GOLDEN_MODELS) == set(NAMES), "regenerate tests/golden/models.json"
    assert keras_mobile.list_models("emo*") == [n for n in NAMES if n.startswith("EMO")]


def test_every_family_has_one_tiny_configuration():
    """The fast tier's conversion, QAT and training tests run on these."""
    tiny = tiny_configs()
    covered = [get_entry(name).family for name in tiny]
    assert sorted(covered) == families()  # each family once
    for name, kwargs in tiny.items():
        assert kwargs["input_shape"][0] <= 64, name  # seconds to convert, not minutes


@pytest.fixture(scope="module", params=NAMES)
def built(request):
    return request.param, keras_mobile.get_model(request.param, weights=None)


def test_golden_manifest(built):
    name, model = built
    found = differences(model, GOLDEN_MODELS[name])
    assert not found, f"{name} differs from tests/golden/models.json: " + "; ".join(found[:10])


def test_golden_differences_name_the_layers():
    small = keras_mobile.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3))
    golden = {**manifest(small), **measures(small)}
    assert differences(small, golden) == []
    wider = keras_mobile.MobileNetV2(weights=None, alpha=0.5, input_shape=(32, 32, 3))
    found = differences(wider, golden)
    assert "layer block2a_project_conv: its variables' names or shapes changed" in found
    assert "layer stem_conv: its variables' names or shapes changed" not in found  # 16 wide
    assert any(line.startswith("params: ") for line in found)
    no_top = keras_mobile.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 3),
                                      include_top=False)
    assert "layer predictions: removed" in differences(no_top, golden)


def test_readme_table_is_generated_from_the_golden_file():
    papers = {name: get_entry(name).paper for name in NAMES}
    assert readme_table() == render_table(GOLDEN_MODELS, papers)


def test_layer_names_follow_the_grammar(built):
    _, model = built
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    bad = [n for n in names if not NAME.match(n)]
    assert not bad, bad[:5]


def test_feature_markers_at_strides_4_to_32(built):
    _, model = built
    size = model.input.shape[1]
    assert keras_mobile.feature_levels(model) == [2, 3, 4, 5]
    for level in (2, 3, 4, 5):
        assert model.get_layer(f"P{level}").output.shape[1] == -(-size // 2 ** level)


def test_keras_applications_signature(built):
    name, model = built
    # The registry knows the default resolution without building (the trainer reads it).
    assert model.input_shape[1:3] == (get_entry(name).default_size,) * 2
    params = inspect.signature(get_entry(name).builder)
    assert set(KERAS_APPLICATIONS_ARGS) <= set(params.parameters)
    assert params.parameters["include_preprocessing"].default is True
    assert params.parameters["classes"].default == 1000


@pytest.mark.parametrize("name", NAMES)
def test_small_forward_is_finite(name):
    model = keras_mobile.get_model(name, weights=None, input_shape=(64, 64, 3), classes=7)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    y = model(x, training=False).numpy()
    assert y.shape == (2, 7)
    assert np.isfinite(y).all()
    assert np.allclose(y.sum(axis=1), 1.0, atol=1e-5)
    pooled = keras_mobile.get_model(name, weights=None, input_shape=(64, 64, 3),
                                    include_top=False, pooling="avg")
    features = pooled(x, training=False).numpy()
    assert features.ndim == 2 and np.isfinite(features).all()
