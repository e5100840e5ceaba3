"""Package attributes imported on first use (PEP 562), so that importing a package, or a light
module inside it, does not import torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``names[attr]`` (a module path) when ``attr`` is
    first read from ``package``."""

    def __getattr__(attr: str) -> object:
        if attr in names:
            return getattr(importlib.import_module(names[attr]), attr)
        raise AttributeError(f"module {package!r} has no attribute {attr!r}")

    return __getattr__
