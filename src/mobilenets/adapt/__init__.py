"""NetAdapt (the V3 paper's Section 5.2): per-layer widths found by measured latency.

``adapt(AdaptConfig(...), out)`` searches, trains the result and the uniform-α networks and
compares them; :mod:`~mobilenets.adapt.lut` is the latency model, :mod:`~mobilenets.adapt.prune`
the cuts and weight inheritance, :mod:`~mobilenets.adapt.search` the loop. Names are imported on
first use: :mod:`mobilenets.adapt.config`, which the command line reads, imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenets.lazy import lazy_getattr

__all__ = ["AdaptConfig", "LatencyTable", "adapt", "lut_accuracy"]
__getattr__ = lazy_getattr(
    __name__,
    {
        "AdaptConfig": "mobilenets.adapt.config",
        "LatencyTable": "mobilenets.adapt.lut",
        "adapt": "mobilenets.adapt.run",
        "lut_accuracy": "mobilenets.adapt.run",
    },
)

if TYPE_CHECKING:
    from mobilenets.adapt.config import AdaptConfig
    from mobilenets.adapt.lut import LatencyTable
    from mobilenets.adapt.run import adapt, lut_accuracy
