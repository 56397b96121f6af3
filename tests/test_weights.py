"""Weights: name-keyed files, official PyTorch checkpoints, the ImageNet download path."""

import os

import h5py
import keras
import numpy as np
import pytest
from conftest import REPO, nhwc, state_dict

import keras_mobile
from keras_mobile.weights import imagenet, load_official_state_dict, load_weights, pth, save_weights

EMO_PTH = os.path.join(REPO, "tests", "data", "pth", "emo_1m_reference.pth")


def _two_convs(swapped: bool):
    """Two same-shape convs; ``swapped`` creates them in the other order."""
    inputs = keras.Input((8, 8, 4))
    first, second = keras.layers.Conv2D(4, 1, name="a"), keras.layers.Conv2D(4, 1, name="b")
    if swapped:
        second.build((None, 8, 8, 4))
        first.build((None, 8, 8, 4))
    return keras.Model(inputs, second(first(inputs)))


def test_name_keyed_file_survives_a_change_of_creation_order(tmp_path):
    source, target = _two_convs(False), _two_convs(True)
    path = save_weights(source, tmp_path / "m.h5")
    load_weights(target, path)
    for name in "ab":
        assert np.array_equal(source.get_layer(name).kernel.numpy(),
                              target.get_layer(name).kernel.numpy())
    with h5py.File(path) as f:
        assert sorted(f["a"]) == ["bias", "kernel"]
        assert f.attrs["format"] == "keras_mobile.weights/1"


def test_builder_loads_its_own_file_and_rejects_another_architecture(tmp_path):
    model = keras_mobile.EMO1M(weights=None, input_shape=(64, 64, 3))
    path = save_weights(model, tmp_path / "emo1m.h5")
    clone = keras_mobile.EMO1M(weights=path, input_shape=(64, 64, 3))
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    assert np.array_equal(model(x, training=False).numpy(), clone(x, training=False).numpy())
    with pytest.raises(ValueError, match="Weights file .* does not fit model 'emo_5m'"):
        keras_mobile.EMO5M(weights=path, input_shape=(64, 64, 3))


def test_mismatch_names_the_layer_and_shapes(tmp_path):
    path = save_weights(keras_mobile.EMO1M(weights=None), tmp_path / "emo1m.h5")
    with pytest.raises(ValueError) as info:
        keras_mobile.EMO2M(weights=path)
    assert "first mismatching layer 'block1c_norm': the file has no 'block1c_norm/gamma'" in \
        str(info.value)
    with pytest.raises(ValueError, match=r"first mismatching layer 'block1a_project_conv': "
                                         r"'block1a_project_conv/kernel' has shape "
                                         r"\(1, 1, 96, 32\) in the file and \(1, 1, 96, 48\)"):
        keras_mobile.EMO5M(weights=path)


def test_failed_save_keeps_the_good_file(tmp_path, monkeypatch):
    model = keras_mobile.EMO1M(weights=None, input_shape=(64, 64, 3))
    path = save_weights(model, tmp_path / "good.h5")
    good = open(path, "rb").read()

    def broken(self, name, data=None, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        save_weights(model, path)
    assert open(path, "rb").read() == good
    assert os.listdir(tmp_path) == ["good.h5"]


def test_official_state_dict_errors(emo_1m_reference):
    model = keras_mobile.EMO1M(weights=None)
    sd = state_dict(emo_1m_reference)
    missing = dict(sd)
    del missing["stage3.1.qk.conv.weight"]
    with pytest.raises(ValueError, match=r"1 missing key\(s\) \['stage3.1.qk.conv.weight'\]"):
        load_official_state_dict(model, missing)
    with pytest.raises(ValueError, match=r"1 unexpected key\(s\) \['extra.weight'\]"):
        load_official_state_dict(model, {**sd, "extra.weight": np.zeros(3)})
    bad = {**sd, "head.weight": np.zeros((10, 168), "float32")}
    with pytest.raises(ValueError, match=r"Shape mismatch at 'head.weight' -> layer 'predictions'"):
        load_official_state_dict(model, bad)
    with pytest.raises(ValueError, match="missing key"):
        load_official_state_dict(keras_mobile.EMO2M(weights=None), sd)


def test_official_checkpoint_file_loads_through_the_builder(emo_1m_reference):
    """A real torch.save() file of the reference weights, read without torch."""
    loaded, official = pth.load_state_dict(EMO_PTH), state_dict(emo_1m_reference)
    assert list(loaded) == list(official)  # the compact file's weights, bit for bit
    assert all(np.array_equal(loaded[k], v) for k, v in official.items())
    model = keras_mobile.EMO1M(weights=EMO_PTH, include_preprocessing=False,
                               classifier_activation=None)
    logits = model(nhwc(emo_1m_reference["input_224"]), training=False).numpy()
    assert np.abs(logits - emo_1m_reference["logits_224"]).max() <= 2e-5  # measured 1.2e-5


def test_imagenet_download_path_with_a_local_file(emo_1m_reference, tmp_path, monkeypatch):
    """weights="imagenet" runs keras.utils.get_file + the pinned git-blob hash + conversion."""
    blob = imagenet.git_blob_sha1(EMO_PTH)
    monkeypatch.setattr(imagenet, "CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(imagenet.CHECKPOINTS, ("EMO", "1M"),
                        imagenet.Checkpoint("file://" + EMO_PTH, blob))
    model = keras_mobile.EMO1M(weights="imagenet", include_preprocessing=False,
                               classifier_activation=None)
    logits = model(nhwc(emo_1m_reference["input_224"]), training=False).numpy()
    assert np.abs(logits - emo_1m_reference["logits_224"]).max() <= 2e-5  # measured 1.2e-5
    assert os.path.isfile(tmp_path / "models" / "keras_mobile" / "emo_1M_emo_1m_reference.pth")


def test_imagenet_hash_mismatch_deletes_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(imagenet, "CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(imagenet.CHECKPOINTS, ("EMO", "1M"),
                        imagenet.Checkpoint("file://" + EMO_PTH, "0" * 40))
    with pytest.raises(ValueError, match="is not the released checkpoint"):
        keras_mobile.EMO1M(weights="imagenet")
    assert not os.path.exists(tmp_path / "models" / "keras_mobile" / "emo_1M_emo_1m_reference.pth")


def test_imagenet_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(imagenet, "CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(imagenet.CHECKPOINTS, ("EMO", "1M"),
                        imagenet.Checkpoint("http://127.0.0.1:9/net.pth", "0" * 40))
    with pytest.raises(OSError, match="Could not download the ImageNet weights of EMO 1M") as info:
        keras_mobile.EMO1M(weights="imagenet")
    assert "weights='/path/to/file'" in str(info.value)


def test_official_pins_are_git_blob_ids():
    assert {k for k in imagenet.CHECKPOINTS} >= {("EMO", v) for v in ("1M", "2M", "5M", "6M")}
    assert all(len(c.git_blob_sha1) == 40 for c in imagenet.CHECKPOINTS.values())


def test_official_layout_only_for_emo_and_mobilenext(emo_1m_reference):
    with pytest.raises(ValueError, match="has no official PyTorch layout"):
        load_official_state_dict(keras_mobile.MobileNetV2(weights=None, input_shape=(64, 64, 3)),
                                 state_dict(emo_1m_reference))
