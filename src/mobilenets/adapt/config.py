"""The settings of a NetAdapt search (torch-free: the command line builds its flags from it).

As :class:`~mobilenets.training.config.TrainConfig`, every field carries its help text and its
allowed range or choices as metadata: the same metadata checks an ``AdaptConfig`` built from
Python and generates the ``adapt`` command's flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mobilenets.catalog import MIN_INPUT_SIZE, MODEL_NAMES
from mobilenets.errors import ConfigError
from mobilenets.training.config import (
    MAX_RESOLUTION,
    MAX_WIDTH_MULT,
    Range,
    check_fields,
    meta,
)

UNIFORM_ALPHAS = (1.0, 0.75, 0.5, 0.35, 0.25)
#: The families NetAdapt cuts (inverted residual blocks; V1 has none).
ADAPTABLE = tuple(n for n in MODEL_NAMES if n.startswith(("mobilenet_v2", "mobilenet_v3")))
POSITIVE = Range(1, None, integer=True)


def _positive(help: str, default: int, **kwargs: object) -> object:
    return field(default=default, metadata=meta(help, range=POSITIVE, **kwargs))


@dataclass
class AdaptConfig:
    """One search: the seed network, the data, the latency target and the budgets.

    The target is ``target_ms`` or ``target_ratio`` × the seed's predicted latency (one of them).
    Every budget is counted in optimizer steps or epochs so that a search is reproducible.
    """

    model: str = field(
        default="mobilenet_v3_small", metadata=meta("the seed network's family", choices=ADAPTABLE)
    )
    width_mult: float = field(
        default=1.0,
        metadata=meta("the seed's α", range=Range(0, MAX_WIDTH_MULT, low_open=True)),
    )
    data: str = field(default="digits", metadata=meta("data spec (digits, photos, a folder)"))
    resolution: int = field(
        default=64,
        metadata=meta("input size, px", range=Range(MIN_INPUT_SIZE, MAX_RESOLUTION, integer=True)),
    )
    target_ms: float | None = field(
        default=None,
        metadata=meta("latency target, ms", range=Range(0, None, low_open=True), cli=False),
    )
    target_ratio: float | None = field(
        default=None,
        metadata=meta(
            "latency target as a share of the seed's predicted latency",
            range=Range(0, 1, low_open=True, high_open=True),
            cli=False,
        ),
    )
    backend: str = field(
        default="ort", metadata=meta("the runtime latency is for", choices=("ort", "eager"))
    )
    threads: int = _positive("runtime threads", 1)
    steps: int = _positive("NetAdapt steps planned: each cuts (start − target) / steps", 6)
    seed_steps: int = _positive("SGD steps training the seed network", 600)
    finetune_steps: int = _positive("short-term fine-tune of each proposal, SGD steps", 150)
    final_epochs: int = _positive(
        "epochs training the adapted and each uniform-α network from scratch", 15
    )
    batch_size: int = field(
        default=64, metadata=meta("batch size (≥ 2: BatchNorm)", range=Range(2, None, integer=True))
    )
    lr: float = field(
        default=0.05,
        metadata=meta("SGD learning rate, cosine to 0", range=Range(0, 10, low_open=True)),
    )
    holdout: int = _positive("training images kept out of fine-tunes to rank proposals", 300)
    divisor: int = field(
        default=8,
        metadata=meta(
            "cut channels stay divisible by this (4 below 16 channels)", choices=(1, 2, 4, 8, 16)
        ),
    )
    seeds: int = _positive("training seeds of the final comparison (mean and spread)", 1)
    uniform: tuple[float, ...] = field(
        default=UNIFORM_ALPHAS, metadata=meta("the uniform α networks compared", cli=False)
    )
    lut_runs: int = _positive("timed runs per layer of the latency table", 30, cli=False)
    measure_runs: int = _positive(
        "timed rounds of the final interleaved latency comparison", 300, cli=False
    )
    seed: int = field(
        default=0,
        metadata=meta("the search's seed", range=Range(0, None, integer=True), cli=False),
    )

    def __post_init__(self) -> None:
        if (self.target_ms is None) == (self.target_ratio is None):
            raise ConfigError("give exactly one of --target-ms and --target-ratio")
        check_fields(self)
        for alpha in self.uniform:
            Range(0, MAX_WIDTH_MULT, low_open=True).check("uniform", alpha)
        self.uniform = tuple(float(a) for a in self.uniform)
        if len(set(self.uniform)) != len(self.uniform):
            raise ConfigError(f"--uniform must list distinct α, got {self.uniform}")

    def to_dict(self) -> dict:
        return {**asdict(self), "uniform": list(self.uniform)}

    #: Fields that may differ when a search resumes (they do not change its result).
    RESUMABLE = ("seeds", "final_epochs", "uniform")
