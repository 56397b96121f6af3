"""Attributes of a package imported on first use (PEP 562 ``__getattr__``)."""

from __future__ import annotations

import importlib


def lazy_getattr(package: str, table: dict[str, tuple[str, str | None]]):
    """A module ``__getattr__`` for ``package`` that imports ``table[name]`` =
    ``(submodule, attribute or None for the submodule itself)`` when first asked."""

    def __getattr__(name):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = table[name]
        value = importlib.import_module(f"{package}.{module}")
        return value if attribute is None else getattr(value, attribute)

    return __getattr__
