"""The training configuration: every choice of a run, saved in its checkpoint and summary."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from mobilenets.errors import ConfigError

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = ("cosine", "step", "exponential")
DEFAULT_LR = {"sgd": 0.05, "rmsprop": 0.01, "adamw": 2e-3}

#: Fields that may change between a run and its resumption (they do not change the result).
RESUMABLE_CHANGES = frozenset({"resume", "progress", "workers", "out", "data_root", "log_every"})


@dataclass
class TrainConfig:
    """One training run.

    Defaults are a recipe that reaches ≥ 97% on digits in 10 epochs: SGD with Nesterov
    momentum (lr 0.05), label smoothing 0.1, three warmup epochs then cosine decay, weight decay
    5e-4 but none on BN, biases and depthwise filters (V1 paper, Section 4: "very little or no
    weight decay on the depthwise filters since there are so few parameters in them").
    """

    model: str = "mobilenet_v1"
    width_mult: float = 1.0
    resolution: int = 32
    data: str = "digits"
    out: str = "runs/train"
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float | None = None  # default per optimizer: DEFAULT_LR
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    schedule: str = "cosine"
    warmup_epochs: float = 3.0
    ema_decay: float | None = None  # e.g. 0.999: evaluate an exponential moving average
    amp: bool = False  # bf16 autocast on CPU, fp16 + GradScaler on CUDA
    channels_last: bool = True
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    resume: bool = False
    augment: bool = True  # training augmentation (off: compare runs sample for sample)
    cache_in_memory: bool = False
    skip_bad_images: bool = False
    sync_bn: bool = False
    data_root: str | None = None
    progress: bool = True
    log_every: int = 1
    model_kwargs: dict = field(default_factory=dict)  # more create_model keywords (dropout, ...)

    def __post_init__(self) -> None:
        """Every setting checked before anything starts: a bad value names the field and the
        allowed range (the CLI checks the same ranges when it parses the flags)."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 2, "BatchNorm needs two samples per step")
        _check_int("resolution", self.resolution, 32, "MobileNets take any resolution ≥ 32 px")
        _check_int("workers", self.workers, 0)
        _check_int("seed", self.seed, 0)
        _check_int("log_every", self.log_every, 1)
        _check_float("width_mult", self.width_mult, 0, 8, low_open=True)
        if self.lr is not None:
            _check_float("lr", self.lr, 0, 10, low_open=True)
        _check_float("momentum", self.momentum, 0, 1, high_open=True)
        _check_float("weight_decay", self.weight_decay, 0, 1)
        _check_float("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        _check_float("warmup_epochs", self.warmup_epochs, 0, 1000)
        if self.ema_decay is not None:
            _check_float("ema_decay", self.ema_decay, 0, 1, low_open=True, high_open=True)
        if not isinstance(self.model_kwargs, dict):
            raise ConfigError(f"model_kwargs must be a dict, got {self.model_kwargs!r}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def differences(self, other: TrainConfig) -> dict[str, tuple]:
        """Fields (other than ``RESUMABLE_CHANGES``) whose values differ."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in RESUMABLE_CHANGES and a[k] != b[k]}


def _check_int(name: str, value: object, low: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        reason = f" ({why})" if why else ""
        raise ConfigError(f"{name} must be an integer ≥ {low}{reason}, got {value!r}")


def _check_float(
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(
            f"{name} must be a finite number in {left}{low}, {high}{right}, got {value!r}"
        )
