"""``weights="imagenet"``: where each family's ImageNet weights come from.

* MobileNet V1/V2/V3 and EfficientNet: keras.applications' published weights
  (keras downloads them with its own pinned hashes where it has them), copied
  into the keras_mobile model by layer order.
* EMO and MobileNeXt: the authors' released checkpoints, downloaded with
  ``keras.utils.get_file`` and checked against the git blob SHA-1 under which
  they are committed in the authors' repositories, then converted on load.
"""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

import keras

from keras_mobile.weights import official


class Checkpoint(NamedTuple):
    url: str
    git_blob_sha1: str  # sha1(b"blob <size>\0" + content), as listed by `git ls-tree`


_EMO = "https://github.com/zhangzjn/EMO/raw/main/resources/EMO_{}/net.pth"
_MNEXT = "https://github.com/yitu-opensource/MobileNeXt/raw/master/mobilenext/output/{}/model_best.pth.tar"
# (family, variant key) -> checkpoint; blob ids read from the repositories at
# zhangzjn/EMO@27d9b40 and yitu-opensource/MobileNeXt@10f7805.
CHECKPOINTS = {
    ("EMO", "1M"): Checkpoint(_EMO.format("1M"), "76c4282de548fa76eca6011720b29d8f80ffa784"),
    ("EMO", "2M"): Checkpoint(_EMO.format("2M"), "9ec7138d292ca9b2d07923aec05762f547db8cf2"),
    ("EMO", "5M"): Checkpoint(_EMO.format("5M"), "3ea7450fa9c290c3c46f372c1f5cebe1198d1ce1"),
    ("EMO", "6M"): Checkpoint(_EMO.format("6M"), "10a248725247cf18b51e449dbd1a220354457c99"),
    ("MobileNeXt", "1.0"): Checkpoint(_MNEXT.format("74_02_full_id_tensor"),
                                      "e0a567e52c86ab4a66863745162c758f3fd27d84"),
    ("MobileNeXt", "1.0-half-identity"): Checkpoint(_MNEXT.format("74_09_i2rnetv3_half_id"),
                                                    "03f9b1b59f67ccd2191f7846ff9ad7e8647c753d"),
}


def git_blob_sha1(path) -> str:
    """The SHA-1 git gives a file's content (``git hash-object``)."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_error(what: str, url: str, error: Exception) -> OSError:
    return OSError(
        f"Could not download the ImageNet weights of {what} from {url} ({error}). "
        "Without network access, download the file elsewhere and pass its path as "
        "weights='/path/to/file', or pass weights=None to train from scratch.")


CACHE_DIR = None  # None: Keras' cache ($KERAS_HOME or ~/.keras)


def fetch_checkpoint(key: tuple[str, str]) -> str:
    """Download (or find in the Keras cache) an official checkpoint and verify it."""
    checkpoint = CHECKPOINTS[key]
    fname = f"{key[0].lower()}_{key[1]}_{os.path.basename(checkpoint.url)}"
    try:
        path = keras.utils.get_file(fname, checkpoint.url, cache_dir=CACHE_DIR,
                                    cache_subdir=os.path.join("models", "keras_mobile"))
    except Exception as error:  # keras raises a bare Exception on fetch failures
        raise _offline_error(f"{key[0]} {key[1]}", checkpoint.url, error) from error
    actual = git_blob_sha1(path)
    if actual != checkpoint.git_blob_sha1:
        os.remove(path)
        raise ValueError(f"The file downloaded from {checkpoint.url} is not the released "
                         f"checkpoint (git blob {actual}, expected {checkpoint.git_blob_sha1}); "
                         "it was deleted. Try again.")
    return path


def copy_keras_application_weights(source, model):
    """Copy keras.applications ``source``'s weights into ``model`` by layer order.

    Preprocessing statistics (EfficientNet's Normalization layer) are skipped:
    keras_mobile models carry their normalization as constants.
    """
    values = [w for layer in source.layers if not isinstance(layer, keras.layers.Normalization)
              for w in layer.get_weights()]
    targets = model.weights
    if len(values) != len(targets):
        raise ValueError(f"{source.name} has {len(values)} weights, {model.name} "
                         f"{len(targets)}: the architectures differ.")
    for value, variable in zip(values, targets, strict=True):
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{source.name} does not fit {model.name} at {variable.path}: "
                             f"{tuple(value.shape)} vs {tuple(variable.shape)}.")
    for value, variable in zip(values, targets, strict=True):
        variable.assign(value)
    return model


def load_imagenet(model, family: str, variant: dict):
    """Fill ``model`` with ImageNet weights of ``variant`` (what the builder passed)."""
    if "application" in variant:
        kwargs = {k: v for k, v in variant.items() if k not in ("application", "size")}
        builder = getattr(keras.applications, variant["application"])
        size = variant["size"]
        try:
            source = builder(weights="imagenet", input_shape=(size, size, 3), **kwargs)
        except Exception as error:
            if "fetch failure" not in str(error):
                raise
            raise _offline_error(variant["application"], "storage.googleapis.com",
                                 error) from error
        return copy_keras_application_weights(source, model)
    path = fetch_checkpoint((family, variant["checkpoint"]))
    return official.load_official_checkpoint(model, path, family)
