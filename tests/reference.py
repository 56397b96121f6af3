"""The compact reference files of tests/data/reference: the official model's random weights
are not stored but drawn from a seeded generator (the recipe in that folder's README.md)."""

import json
import zlib

import numpy as np


def listing(npz) -> list:
    """``[state_dict key, shape, kind]`` for every entry, in the official state_dict order."""
    return json.loads(str(npz["listing"]))


def state_dict(npz) -> dict[str, np.ndarray]:
    """The official state dict the file's logits were computed with (float32, PyTorch layout)."""
    seed = int(npz["seed"])
    out = {}
    for key, shape, kind in listing(npz):
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        if kind == "weight":
            value = rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape)  # N(0, 1/fan_in)
        elif kind in ("bias", "norm_bias"):
            value = rng.normal(0, 0.1, shape)
        elif kind == "norm_weight":
            value = rng.uniform(0.5, 1.5, shape)
        elif kind == "stat":
            value = npz[f"stat/{key}"]
        elif kind == "counter":
            value = np.zeros(shape)
        else:
            raise ValueError(f"Unknown kind {kind!r} of {key!r}.")
        out[key] = np.asarray(value, "float32")
    return out


def inputs(npz, size: int) -> np.ndarray:
    """The two input images of ``logits_<size>``: N(0, 1), NCHW, fed as is."""
    rng = np.random.default_rng([int(npz["seed"]), size])
    return rng.normal(0, 1, (2, 3, size, size)).astype("float32")
