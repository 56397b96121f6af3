"""Multi-scale features for detection and segmentation heads.

Every keras_mobile model names its feature maps ``P{level}`` (an Identity layer,
free in TFLite) at total stride ``2**level``: ``P2`` (stride 4) ... ``P5``
(stride 32), each the last map at that stride.
"""

from __future__ import annotations

import keras


def feature_levels(model) -> list[int]:
    """The pyramid levels ``model`` marks, e.g. ``[2, 3, 4, 5]``."""
    return sorted(int(layer.name[1:]) for layer in model.layers
                  if layer.name[:1] == "P" and layer.name[1:].isdigit())


def feature_pyramid(model, levels=(2, 3, 4, 5), name: str | None = None):
    """A model from ``model``'s input to its ``P{level}`` maps (shared weights).

    Args:
        model: any keras_mobile model (``include_top`` does not matter).
        levels: which levels to return.

    Returns:
        A ``keras.Model`` whose output is a dict ``{"P3": ..., "P4": ...}``.

    Example:
        >>> backbone = keras_mobile.EMO5M(weights=None, include_top=False)
        >>> fpn_inputs = keras_mobile.feature_pyramid(backbone, levels=(3, 4, 5))
    """
    available = feature_levels(model)
    missing = [level for level in levels if level not in available]
    if not levels or missing:
        raise ValueError(f"levels must be a non-empty subset of {available} for model "
                         f"{model.name!r}. Received: levels={tuple(levels)!r}.")
    outputs = {f"P{level}": model.get_layer(f"P{level}").output for level in levels}
    return keras.Model(model.inputs, outputs, name=name or f"{model.name}_pyramid")
