"""Parameters and multiply-adds per layer and per layer kind, and the papers' figures.

The names below are imported on first use (PEP 562): :mod:`mobilenets.complexity.summary` reads
its cached counts without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenets.lazy import lazy_getattr

__all__ = ["LayerRow", "Profile", "SeparableCost", "layer_kind", "profile"]
__getattr__ = lazy_getattr(__name__, dict.fromkeys(__all__, "mobilenets.complexity.counter"))

if TYPE_CHECKING:
    from mobilenets.complexity.counter import (
        LayerRow,
        Profile,
        SeparableCost,
        layer_kind,
        profile,
    )
