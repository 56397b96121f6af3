"""The model registry: every public builder, by its name.

Builders register themselves with :func:`register` in their family module;
``keras_mobile/models/__init__.py`` imports every family explicitly, so the
registry is complete as soon as ``keras_mobile`` is imported.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import NamedTuple


class Entry(NamedTuple):
    """A registered builder and what it is."""

    name: str
    builder: Callable
    family: str
    paper: str  # the paper's (params, MACs, top-1) as written there, for the README table
    default_size: int  # the input resolution the builder uses without input_shape
    # The family's smallest configuration (builder kwargs), on one builder per family: the
    # fast test tier converts, quantizes and trains every family through it.
    tiny: dict | None = None


_REGISTRY: dict[str, Entry] = {}


def register(family, paper: str = "", *, name: str | None = None, doc: str | None = None,
             tiny: dict | None = None):
    """Decorator: add a public builder to the registry under its function name.

    ``family`` is the builder's ``models._common.Family``: the entry records its
    name and default input size.

    A builder made by a factory (one per variant) passes its public ``name`` and
    ``doc``, which become its ``__name__``/``__qualname__`` and ``__doc__``.

    ``tiny``: builder kwargs of the family's smallest useful configuration
    (seconds to convert); one builder per family carries it.
    """

    def wrap(builder):
        if name is not None:
            builder.__name__ = builder.__qualname__ = name
        if doc is not None:
            builder.__doc__ = doc
        if builder.__name__ in _REGISTRY:
            raise RuntimeError(f"model {builder.__name__!r} is registered twice")
        _REGISTRY[builder.__name__] = Entry(builder.__name__, builder, family.name, paper,
                                            family.default_size, tiny)
        return builder

    return wrap


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered builders, sorted; ``pattern`` is a
    case-insensitive shell pattern such as ``"EMO*"`` or ``"*V3*"``.

    Example:
        >>> keras_mobile.list_models("EMO*")
        ['EMO10M', 'EMO1M', 'EMO20M', 'EMO2M', 'EMO5M', 'EMO6M']
    """
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(f"pattern must be a string or None. Received: pattern={pattern!r}.")
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]


def tiny_configs() -> dict[str, dict]:
    """``{builder name: its tiny kwargs}``, one builder per family."""
    return {name: dict(e.tiny) for name, e in sorted(_REGISTRY.items()) if e.tiny is not None}


def families() -> list[str]:
    """The registered families' names, sorted."""
    return sorted({e.family for e in _REGISTRY.values()})


def get_entry(name: str) -> Entry:
    """The registry entry of ``name``, or a ValueError listing the available names."""
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model. Received: name={name!r}.{hint} "
            f"Available: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def get_model(name: str, **kwargs):
    """Build a registered model by name, e.g. ``get_model("EMO1M", weights=None)``."""
    return get_entry(name).builder(**kwargs)


def normalize(x, name: str):
    """Apply model ``name``'s input normalization to raw [0, 255] RGB ``x`` — what a
    model built with ``include_preprocessing=False`` expects.

    Example:
        >>> model = keras_mobile.EMO1M(weights=None, include_preprocessing=False)
        >>> model(keras_mobile.normalize(images, "EMO1M"))
    """
    import importlib  # noqa: PLC0415

    from keras_mobile.models import _common  # noqa: PLC0415

    family = importlib.import_module(get_entry(name).builder.__module__).FAMILY
    return _common.normalize(x, family)
