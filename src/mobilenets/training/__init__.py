"""Training, evaluation, checkpoints and the α/ρ sweep."""

from mobilenets.training.config import TrainConfig
from mobilenets.training.evaluation import evaluate_checkpoint
from mobilenets.training.fit import FitResult, fit
from mobilenets.training.sweep import SweepConfig, sweep

__all__ = [
    "FitResult",
    "SweepConfig",
    "TrainConfig",
    "evaluate_checkpoint",
    "fit",
    "sweep",
]
