"""Shared test fixtures. The reference data lives in ../shared/reference (beside the repo)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("KERAS_MOBILE_SHARED", os.path.join(os.path.dirname(REPO), "shared"))


# One small configuration per family for the fast tier (conversion time is set by the
# graph's size, so the smallest widths and inputs keep it to seconds); EMO at 64 px so
# that its attention stages see more than one token.
TINY = {
    "MobileNet": dict(alpha=0.25, input_shape=(32, 32, 3)),
    "MobileNetV2": dict(alpha=0.35, input_shape=(32, 32, 3)),
    "MobileNetV3Small": dict(alpha=0.75, input_shape=(32, 32, 3)),
    "EfficientNetB0": dict(input_shape=(32, 32, 3)),
    "MobileNeXt": dict(alpha=0.35, input_shape=(32, 32, 3)),
    "EMO1M": dict(input_shape=(64, 64, 3)),
}


def reference_path(name: str) -> str:
    """Path of a reference file; a missing file fails the test (never skips it)."""
    path = os.path.join(SHARED, "reference", name)
    if not os.path.isfile(path):
        pytest.fail(f"reference data {path} is missing: the shared/ folder must sit beside the "
                    "repository (or set KERAS_MOBILE_SHARED).")
    return path


@pytest.fixture(scope="session")
def emo_1m_reference():
    return np.load(reference_path("emo_1m.npz"))


def state_dict(npz, prefix: str = "sd/") -> dict:
    return {k[len(prefix):]: npz[k] for k in npz.files if k.startswith(prefix)}


def nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory):
    """A tfds data dir with the embedded dataset prepared (~10 s, once per session)."""
    from keras_mobile import data

    path = str(tmp_path_factory.mktemp("tfds"))
    data.dataset_info("keras_mobile_shapes", path)
    return path
