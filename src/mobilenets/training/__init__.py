"""Training, evaluation, checkpoints and the α/ρ sweep.

The names below are imported on first use (PEP 562), so ``mobilenets.training.config`` (which
the command line reads to build its flags) can be imported without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenets.lazy import lazy_getattr

__all__ = [
    "FitResult",
    "SweepConfig",
    "TrainConfig",
    "evaluate_checkpoint",
    "fit",
    "sweep",
]
__getattr__ = lazy_getattr(
    __name__,
    {
        "FitResult": "mobilenets.training.loop",
        "SweepConfig": "mobilenets.training.config",
        "TrainConfig": "mobilenets.training.config",
        "evaluate_checkpoint": "mobilenets.training.evaluation",
        "fit": "mobilenets.training.loop",
        "sweep": "mobilenets.training.grid",
    },
)

if TYPE_CHECKING:
    from mobilenets.training.config import SweepConfig, TrainConfig
    from mobilenets.training.evaluation import evaluate_checkpoint
    from mobilenets.training.grid import sweep
    from mobilenets.training.loop import FitResult, fit
