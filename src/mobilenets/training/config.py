"""The training configuration: every choice of a run, saved in its checkpoint and summary.

Each field carries its help text and its allowed range (:class:`Range`) as metadata: the same
metadata checks a ``TrainConfig`` built from Python and generates the ``train`` and ``sweep``
command-line flags, so no default, range or help text is written twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

from mobilenets.catalog import MIN_INPUT_SIZE, MODEL_NAMES
from mobilenets.errors import ConfigError

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = ("cosine", "step", "exponential", "poly")
DEFAULT_LR = {"sgd": 0.05, "rmsprop": 0.01, "adamw": 2e-3}
#: From weights: the from-scratch rates ÷ 25. Measured for SGD on the photos task (V2 from
#: torchvision's ImageNet weights, 10 epochs, benchmarks/finetune.py): 0.002 reached 89.6% with a
#: rising curve; 0.005 and 0.02 dipped after warmup (to 48% and 27%) before recovering to 88.8%
#: and 88.1%; 0.05 (the from-scratch rate) ended at 65.4%, below training from scratch.
FINETUNE_LR = {name: lr / 25 for name, lr in DEFAULT_LR.items()}
DEFAULT_WARMUP, FINETUNE_WARMUP = 3.0, 1.0
DEFAULT_MODEL = "mobilenet_v1"
MAX_RESOLUTION = 4096
MAX_WIDTH_MULT = 8.0

#: Fields that may change between a run and its resumption (they do not change the result).
RESUMABLE_CHANGES = frozenset({"resume", "progress", "workers", "out", "data_root", "log_every"})


@dataclass(frozen=True)
class Range:
    """The values a number may take: finite, in [low, high] (each end open or closed)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    why: str = ""

    def describe(self) -> str:
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else self.low
        high = "inf" if self.high is None else self.high
        kind = "an integer" if self.integer else "a finite number"
        return f"{kind} in {left}{low}, {high}{right}" + (f" ({self.why})" if self.why else "")

    def contains(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def check(self, name: str, value: object) -> None:
        if not self.contains(value):
            raise ConfigError(f"{name} must be {self.describe()}, got {value!r}")


def meta(
    help: str,
    *,
    range: Range | None = None,
    choices: tuple[str, ...] | None = None,
    cli: bool = True,
    sweep: bool = True,
) -> dict:
    """A config field's metadata: its help, range or choices; ``cli=False`` keeps it off the
    command line, ``sweep=False`` off ``sweep`` (which sets it per cell, or where it means
    nothing)."""
    return {"help": help, "range": range, "choices": choices, "cli": cli, "sweep": sweep}


def check_fields(config: object) -> None:
    """Every field of a config dataclass checked by its own metadata (range or choices): a bad
    value names the field and what is allowed. ``None`` passes where it is the default."""
    for f in fields(config):
        value = getattr(config, f.name)
        choices, allowed = f.metadata.get("choices"), f.metadata.get("range")
        if value is None and f.default is None:
            continue
        if choices is not None and value not in choices:
            raise ConfigError(f"{f.name} must be one of {choices}, got {value!r}")
        if allowed is not None:
            allowed.check(f.name, value)


@dataclass
class TrainConfig:
    """One training run.

    Defaults are a recipe that reaches ≥ 97% on digits in 10 epochs: SGD with Nesterov
    momentum (lr 0.05), label smoothing 0.1, three warmup epochs then cosine decay, weight decay
    5e-4 but none on BN, biases and depthwise filters (V1 paper, Section 4: "very little or no
    weight decay on the depthwise filters since there are so few parameters in them").
    """

    model: str | None = field(
        default=None,
        metadata=meta(
            f"the network (default: {DEFAULT_MODEL}, or with --weights the weights' network)",
            choices=MODEL_NAMES,
        ),
    )
    width_mult: float | None = field(
        default=None,
        metadata=meta(
            "width multiplier α (default: 1, or with --weights the weights' width)",
            range=Range(0, MAX_WIDTH_MULT, low_open=True),
            sweep=False,
        ),
    )
    weights: str | None = field(
        default=None,
        metadata=meta(
            "start from these weights: a .safetensors file, a run's checkpoint.pt, or a name "
            "(torchvision:mobilenet_v2.IMAGENET1K_V1); the network, its width and its "
            "preprocessing come from them, the classifier is replaced when the classes differ, "
            "and the fine-tuning defaults apply (lr ÷ 25, 1 warmup epoch)",
            sweep=False,
        ),
    )
    freeze_epochs: int = field(
        default=0,
        metadata=meta(
            "with --weights: train only the classifier for the first N epochs (the body and its "
            "BN statistics frozen; N = --epochs trains a linear probe)",
            range=Range(0, integer=True),
            sweep=False,
        ),
    )
    freeze_bn: bool = field(
        default=False,
        metadata=meta(
            "with --weights: keep the BatchNorm statistics of the weights (BN layers in eval "
            "mode; their scale and shift still train), usual for small data",
            sweep=False,
        ),
    )
    qat: bool = field(
        default=False,
        metadata=meta(
            "quantization-aware training from --weights: fine-tune with fake int8 (PT2E, "
            "XNNPACK quantizer, per-channel weights); `mobilenets quantize` then writes the "
            "int8 .pte, .onnx or .xml from the run's checkpoint",
            sweep=False,
        ),
    )
    qat_bn_epochs: int | None = field(
        default=None,
        metadata=meta(
            "with --qat: update BatchNorm statistics for the first N epochs, then freeze them "
            "(0: frozen from the start, as a run fine-tuned with --freeze-bn kept them; "
            "default: half the epochs, rounded up)",
            range=Range(0, integer=True),
            sweep=False,
        ),
    )
    qat_observer_epochs: int | None = field(
        default=None,
        metadata=meta(
            "with --qat: update the activation ranges for the first N epochs, then freeze "
            "them (default: one epoch after BatchNorm, at most --epochs)",
            range=Range(1, integer=True),
            sweep=False,
        ),
    )
    teacher: str | None = field(
        default=None,
        metadata=meta(
            "distil from this network (a .safetensors, a checkpoint.pt or a weights name, with "
            "the data's classes): loss (1-W)·CE + W·T²·KL(teacher/T ‖ student/T)",
            sweep=False,
        ),
    )
    distill_temperature: float = field(
        default=4.0,
        metadata=meta(
            "distillation temperature T", range=Range(0, 100, low_open=True), sweep=False
        ),
    )
    distill_weight: float = field(
        default=0.5,
        metadata=meta(
            "distillation weight W of the teacher's term", range=Range(0, 1), sweep=False
        ),
    )
    resolution: int = field(
        default=32,
        metadata=meta(
            "input size in px (ρ·224)",
            range=Range(
                MIN_INPUT_SIZE, MAX_RESOLUTION, integer=True, why="MobileNets take ≥ 32 px"
            ),
            sweep=False,
        ),
    )
    data: str = field(
        default="digits",
        metadata=meta(
            "digits, photos, cifar10, imagenette[:160px|:320px|:full], or a folder with train/ "
            "and val/",
        ),
    )
    out: str = field(default="runs/train", metadata=meta("run folder", cli=False))
    epochs: int = field(default=10, metadata=meta("training epochs", range=Range(1, integer=True)))
    batch_size: int = field(
        default=64,
        metadata=meta(
            "global batch size",
            range=Range(2, integer=True, why="BatchNorm needs two samples per step"),
        ),
    )
    optimizer: str = field(
        default="sgd", metadata=meta("optimizer (RMSProp is the papers')", choices=OPTIMIZERS)
    )
    lr: float | None = field(
        default=None,
        metadata=meta(
            "peak learning rate (default: 0.05 sgd, 0.01 rmsprop, 0.002 adamw; ÷ 25 with "
            "--weights)",
            range=Range(0, 10, low_open=True),
        ),
    )
    momentum: float = field(
        default=0.9, metadata=meta("momentum", range=Range(0, 1, high_open=True))
    )
    weight_decay: float = field(
        default=5e-4,
        metadata=meta("weight decay (not on BN, biases, depthwise filters)", range=Range(0, 1)),
    )
    label_smoothing: float = field(
        default=0.1, metadata=meta("label smoothing", range=Range(0, 1, high_open=True))
    )
    schedule: str = field(
        default="cosine",
        metadata=meta("learning-rate schedule after warmup (exponential: V2's)", choices=SCHEDULES),
    )
    warmup_epochs: float | None = field(
        default=None,
        metadata=meta(
            f"linear warmup epochs (default: {DEFAULT_WARMUP:g}, or {FINETUNE_WARMUP:g} with "
            "--weights; at most half the run)",
            range=Range(0, 1000),
        ),
    )
    ema_decay: float | None = field(
        default=None,
        metadata=meta(
            "keep and evaluate an EMA of the weights (e.g. 0.999)",
            range=Range(0, 1, low_open=True, high_open=True),
        ),
    )
    amp: bool = field(default=False, metadata=meta("bf16 autocast on CPU, fp16 on CUDA"))
    channels_last: bool = field(default=True, metadata=meta("channels_last memory format"))
    device: str = field(default="auto", metadata=meta("auto, cpu, cuda, cuda:1, ..."))
    workers: int = field(
        default=0, metadata=meta("DataLoader worker processes", range=Range(0, 256, integer=True))
    )
    seed: int = field(
        default=0, metadata=meta("random seed", range=Range(0, 2**32 - 1, integer=True))
    )
    resume: bool = field(
        default=False,
        metadata=meta("continue the run in --out from its last checkpoint", sweep=False),
    )
    augment: bool = field(
        default=True, metadata=meta("training augmentation (random resized crop, flip)")
    )
    cache_in_memory: bool = field(
        default=False, metadata=meta("decode and resize every image once, train from RAM")
    )
    skip_bad_images: bool = field(
        default=False, metadata=meta("skip and count unreadable images instead of failing")
    )
    sync_bn: bool = field(
        default=False, metadata=meta("SyncBatchNorm across processes under torchrun")
    )
    data_root: str | None = field(
        default=None,
        metadata=meta("where downloads go (default $MOBILENETS_DATA or ~/.cache/mobilenets/data)"),
    )
    progress: bool = field(default=True, metadata=meta("progress bars"))
    log_every: int = field(
        default=1, metadata=meta("log every N epochs", range=Range(1, integer=True))
    )
    extended_from: list[int] = field(
        default_factory=list,
        metadata=meta("epochs at which a finished run was extended (set by --resume)", cli=False),
    )
    model_kwargs: dict = field(
        default_factory=dict, metadata=meta("more create_model keywords (dropout, ...)", cli=False)
    )
    holdout: int = field(
        default=0,
        metadata=meta(
            "training images kept out of training (a permutation seeded by --seed; the "
            "platform-aware search scores candidates on them)",
            range=Range(0, None, integer=True),
            cli=False,
        ),
    )
    supernet: dict | None = field(
        default=None,
        metadata=meta(
            "a search space (SearchSpace.to_dict()): train the single-path supernet over it",
            cli=False,
        ),
    )

    def __post_init__(self) -> None:
        """Every setting checked before anything starts, by the fields' own ranges and choices:
        a bad value names the field and what is allowed."""
        check_fields(self)
        if not isinstance(self.model_kwargs, dict):
            raise ConfigError(f"model_kwargs must be a dict, got {self.model_kwargs!r}")
        if self.supernet is not None:
            self._check_supernet()
        self._check_recipe()
        if self.weights is None:  # the network is the flags' (else the weights', see fit)
            self.model = self.model or DEFAULT_MODEL
            self.width_mult = 1.0 if self.width_mult is None else self.width_mult

    def _check_recipe(self) -> None:
        """Fine-tuning and distillation settings make sense only with what they act on."""
        if self.weights is None:
            for name in ("freeze_epochs", "freeze_bn"):
                if getattr(self, name):
                    raise ConfigError(
                        f"{name} needs weights to start from (--weights): a randomly "
                        "initialised body has nothing to keep"
                    )
        self._check_qat()
        if self.freeze_epochs > self.epochs:
            raise ConfigError(
                f"freeze_epochs ({self.freeze_epochs}) is more than epochs ({self.epochs}); "
                "at most epochs (a linear probe)"
            )
        if self.teacher is None:
            defaults = {f.name: f.default for f in fields(self)}
            for name in ("distill_temperature", "distill_weight"):
                if getattr(self, name) != defaults[name]:
                    raise ConfigError(f"{name} needs a teacher to distil from (--teacher)")

    def _check_supernet(self) -> None:
        """A supernet trains from scratch, as its space's base, in full precision."""
        if not isinstance(self.supernet, dict):
            raise ConfigError(f"supernet must be a search space's settings, got {self.supernet!r}")
        base = self.supernet.get("base", "mobilenet_v3_small")
        if self.model not in (None, base):
            raise ConfigError(f"a supernet over a {base} space trains as {base}, not {self.model}")
        for name in ("weights", "qat", "teacher"):
            if getattr(self, name):
                raise ConfigError(
                    f"a supernet trains from scratch without --{name.replace('_', '-')}"
                )

    def _check_qat(self) -> None:
        """QAT fine-tunes trained weights; the QAT settings need --qat; what QAT cannot carry
        (an EMA of fake-quantized weights, SyncBatchNorm or frozen layers in a captured graph,
        autocast around fake quantization) is refused."""
        if not self.qat:
            for name in ("qat_bn_epochs", "qat_observer_epochs"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"{name} needs --qat")
            return
        if self.weights is None:
            raise ConfigError(
                "--qat needs trained weights to start from (--weights RUN/checkpoint.pt, a "
                ".safetensors file or a weights name): quantization-aware training fine-tunes "
                "a trained network"
            )
        for name in ("ema_decay", "sync_bn", "amp", "freeze_epochs", "freeze_bn"):
            if getattr(self, name):
                hint = " (QAT freezes BatchNorm itself: --qat-bn-epochs)" * ("freeze" in name)
                raise ConfigError(f"--qat cannot be combined with --{name.replace('_', '-')}{hint}")
        for name in ("qat_bn_epochs", "qat_observer_epochs"):
            value = getattr(self, name)
            if value is not None and value > self.epochs:
                raise ConfigError(f"{name} ({value}) is more than epochs ({self.epochs})")

    @property
    def qat_phases(self) -> tuple[int, int]:
        """The epochs (counted from 0) from which BatchNorm statistics, then activation
        ranges, are frozen."""
        bn = -(-self.epochs // 2) if self.qat_bn_epochs is None else self.qat_bn_epochs
        observers = self.qat_observer_epochs or min(self.epochs, bn + 1)
        return bn, observers

    @property
    def finetuning(self) -> bool:
        return self.weights is not None

    @property
    def learning_rate(self) -> float:
        """The peak learning rate: ``lr``, or the optimizer's default (÷ 25 from weights)."""
        if self.lr is not None:
            return self.lr
        return (FINETUNE_LR if self.finetuning else DEFAULT_LR)[self.optimizer]

    @property
    def warmup(self) -> float:
        """The warmup asked for: ``warmup_epochs``, or the default (shorter from weights)."""
        if self.warmup_epochs is not None:
            return self.warmup_epochs
        return FINETUNE_WARMUP if self.finetuning else DEFAULT_WARMUP

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def differences(self, other: TrainConfig) -> dict[str, tuple]:
        """Fields (other than ``RESUMABLE_CHANGES``) whose values differ (the learning rate and
        warmup as they resolve, so a default and its value written out are the same)."""
        a, b = self.to_dict(), other.to_dict()
        a["lr"], b["lr"] = self.learning_rate, other.learning_rate
        a["warmup_epochs"], b["warmup_epochs"] = self.warmup, other.warmup
        return {k: (a[k], b[k]) for k in a if k not in RESUMABLE_CHANGES and a[k] != b[k]}


#: Epochs per cell by default: the 12-cell digits grid then takes about 4 minutes on 2 cores.
SWEEP_EPOCHS = 8


@dataclass
class SweepConfig:
    """A grid of width multipliers × resolutions; ``train`` holds every other training choice."""

    out: str = "runs/sweep"
    width_mults: Sequence[float] = (1.0, 0.75, 0.5, 0.25)
    resolutions: Sequence[int] = (64, 48, 32)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=SWEEP_EPOCHS))
    latency_runs: int = 30
    shard: tuple[int, int] = (0, 1)  # (index, count): this process trains cells index::count

    def __post_init__(self) -> None:
        index, count = self.shard
        if not 0 <= index < count:
            raise ConfigError(f"shard must be I/N with 0 ≤ I < N, got {index}/{count}")
        for flag, values in (
            ("--width-mults", self.width_mults),
            ("--resolutions", self.resolutions),
        ):
            repeated = sorted({v for v in values if list(values).count(v) > 1})
            if repeated or not values:
                raise ConfigError(
                    f"{flag} must list distinct values, got {', '.join(map(str, values)) or 'none'}"
                )
