"""The training configuration: every choice of a run, saved in its checkpoint and summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

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
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be ≥ 1, got {self.epochs}, {self.batch_size}"
            )
        if self.resolution < 32:
            raise ValueError(
                f"resolution {self.resolution} px is too small: MobileNets take any "
                "resolution ≥ 32 px"
            )
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")

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
