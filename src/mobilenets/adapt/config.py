"""The settings of a NetAdapt search (torch-free: the command line builds its flags from it)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from mobilenets.errors import ConfigError

UNIFORM_ALPHAS = (1.0, 0.75, 0.5, 0.35, 0.25)


@dataclass
class AdaptConfig:
    """One search: the seed network, the data, the latency target and the budgets.

    The target is ``target_ms`` or ``target_ratio`` × the seed's predicted latency (one of them).
    Every budget is counted in optimizer steps or epochs so that a search is reproducible.
    """

    model: str = "mobilenet_v3_small"
    width_mult: float = 1.0
    data: str = "digits"
    resolution: int = 64
    target_ms: float | None = None
    target_ratio: float | None = None
    backend: str = "ort"  # the latency table's runtime: "ort" or "eager"
    threads: int = 1
    steps: int = 6  # NetAdapt steps planned: each cuts (start − target) / steps
    seed_steps: int = 600  # optimizer steps training the seed network
    finetune_steps: int = 150  # per proposal (short-term fine-tune)
    final_epochs: int = 15  # the adapted table and each uniform-α model, from scratch
    batch_size: int = 64
    lr: float = 0.05  # SGD, cosine to 0 within each training
    holdout: int = 300  # train images kept out of every fine-tune to rank the proposals
    divisor: int = 8  # cuts keep channels divisible by this (4 for tiny units)
    seeds: int = 1  # training seeds of the final comparison (the search itself uses seed 0)
    uniform: tuple[float, ...] = field(default=UNIFORM_ALPHAS)
    lut_runs: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.target_ms is None) == (self.target_ratio is None):
            raise ConfigError("give exactly one of --target-ms and --target-ratio")
        if self.target_ms is not None and not (
            math.isfinite(self.target_ms) and self.target_ms > 0
        ):
            raise ConfigError(f"--target-ms must be a positive number, got {self.target_ms}")
        if self.target_ratio is not None and not 0 < self.target_ratio < 1:
            raise ConfigError(f"--target-ratio must be in (0, 1), got {self.target_ratio}")
        if self.backend not in ("ort", "eager"):
            raise ConfigError(f"--backend must be ort or eager, got {self.backend!r}")
        for name in (
            "steps",
            "seed_steps",
            "finetune_steps",
            "final_epochs",
            "threads",
            "seeds",
            "lut_runs",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be a positive integer, got {value!r}"
                )
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size must be ≥ 2 (BatchNorm), got {self.batch_size}")
        if self.divisor not in (1, 2, 4, 8, 16):
            raise ConfigError(f"--divisor must be 1, 2, 4, 8 or 16, got {self.divisor}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        self.uniform = tuple(float(a) for a in self.uniform)
        if len(set(self.uniform)) != len(self.uniform):
            raise ConfigError(f"--uniform must list distinct α, got {self.uniform}")

    def to_dict(self) -> dict:
        return {**asdict(self), "uniform": list(self.uniform)}

    #: Fields that may differ when a search resumes (they do not change its result).
    RESUMABLE = ("seeds", "final_epochs", "uniform")
