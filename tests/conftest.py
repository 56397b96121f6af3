"""Shared test fixtures. The official reference data lives in tests/data/reference."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import reference  # noqa: E402

from keras_mobile.registry import tiny_configs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# One small configuration per family, from the registry (``register(..., tiny=...)``): the
# fast tier converts, quantizes and trains each; a newly registered family is covered.
TINY = tiny_configs()


def tiny_model(name: str, seed: int = 0, classes: int = 10, **overrides):
    """``name``'s tiny configuration with random weights and BatchNorm statistics
    recalibrated on synthetic images, so its outputs depend on the image (a plain random
    init collapses them)."""
    import keras

    import keras_mobile
    from keras_mobile.data.samples import recalibrate_batchnorm, synthetic_images

    kwargs = {**TINY[name], **overrides}
    keras.utils.set_random_seed(seed)
    model = keras_mobile.get_model(name, weights=None, classes=classes, **kwargs)
    recalibrate_batchnorm(model, synthetic_images(16, kwargs["input_shape"], seed=9))
    return model


def load_reference(name: str) -> dict:
    """A compact file of tests/data/reference (its README.md) expanded: ``sd/<official key>``
    (the state dict), ``listing`` and, per input size, ``input_<size>`` (NCHW) and
    ``logits_<size>`` (the official model's output)."""
    with np.load(os.path.join(REPO, "tests", "data", "reference", name)) as z:
        out = {f"sd/{key}": value for key, value in reference.state_dict(z).items()}
        out["listing"] = reference.listing(z)
        for key in z.files:
            if key.startswith("logits_"):
                out[key] = z[key]
                out[key.replace("logits", "input")] = reference.inputs(z, int(key[7:]))
    return out


@pytest.fixture(scope="session")
def emo_1m_reference():
    return load_reference("emo_1m_seed2026.npz")


def state_dict(data: dict) -> dict:
    """The official state dict of a :func:`load_reference` dict."""
    return {k[3:]: v for k, v in data.items() if k.startswith("sd/")}


def nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory):
    """A tfds data dir with the embedded dataset prepared (~10 s, once per session)."""
    from keras_mobile import data

    path = str(tmp_path_factory.mktemp("tfds"))
    data.dataset_info("keras_mobile_shapes", path)
    return path


@pytest.fixture(scope="session")
def detection_data_dir(tmp_path_factory):
    """A tfds data dir with the embedded detection dataset prepared (~35 s), shared by
    the test processes (pytest-xdist workers: the folder above each one's temp dir; the
    preparation lock lets one process prepare while the others wait)."""
    from keras_mobile import data

    path = str(tmp_path_factory.getbasetemp().parent / "tfds_detection")
    data.dataset_info("keras_mobile_shapes_detection", path)
    return path


def run_script(name: str, *args, timeout: int = 900):
    """``python scripts/<name> args`` from the repository root; the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
