"""V3's design method on measured latency: the platform-aware block search (Section 5.1) and
NetAdapt (Section 5.2).

``search_blocks(BlockSearchConfig(...), out)`` and ``adapt(AdaptConfig(...), out)`` each
search, train the result and the uniform-α networks and compare them;
:mod:`~mobilenets.adapt.block_search` holds the supernet's scoring and the evolution,
:mod:`~mobilenets.adapt.lut` the latency model, :mod:`~mobilenets.adapt.prune` the cuts and
weight inheritance, :mod:`~mobilenets.adapt.search` NetAdapt's loop. Names are imported on
first use: :mod:`mobilenets.adapt.config`, which the command line reads, imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenets.lazy import lazy_getattr

__all__ = [
    "AdaptConfig",
    "BlockSearchConfig",
    "LatencyTable",
    "adapt",
    "lut_accuracy",
    "search_blocks",
]
__getattr__ = lazy_getattr(
    __name__,
    {
        "AdaptConfig": "mobilenets.adapt.config",
        "BlockSearchConfig": "mobilenets.adapt.config",
        "search_blocks": "mobilenets.adapt.block_search",
        "LatencyTable": "mobilenets.adapt.lut",
        "adapt": "mobilenets.adapt.run",
        "lut_accuracy": "mobilenets.adapt.run",
    },
)

if TYPE_CHECKING:
    from mobilenets.adapt.block_search import search_blocks
    from mobilenets.adapt.config import AdaptConfig, BlockSearchConfig
    from mobilenets.adapt.lut import LatencyTable
    from mobilenets.adapt.run import adapt, lut_accuracy
