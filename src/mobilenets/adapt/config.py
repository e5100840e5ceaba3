"""The settings of a NetAdapt search and of a block search (torch-free: the command line
builds its flags from them).

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
#: The bases of the block search's space (V3's stems, stages and heads).
SEARCH_BASES = tuple(n for n in MODEL_NAMES if n.startswith("mobilenet_v3"))


def _positive(help: str, default: int, **kwargs: object) -> object:
    return field(default=default, metadata=meta(help, range=POSITIVE, **kwargs))


@dataclass
class LatencySearch:
    """What NetAdapt and the block search share: the data and held-out images, the latency
    target (``target_ms``, or ``target_ratio`` × a reference network's predicted latency: one
    of them) and its runtime, and the final from-scratch comparison with uniform α."""

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
            "latency target as a share of the predicted latency of NetAdapt's seed, or of the "
            "block search's base at α = 1",
            range=Range(0, 1, low_open=True, high_open=True),
            cli=False,
        ),
    )
    backend: str = field(
        default="ort", metadata=meta("the runtime latency is for", choices=("ort", "eager"))
    )
    threads: int = _positive("runtime threads", 1)
    batch_size: int = field(
        default=64, metadata=meta("batch size (≥ 2: BatchNorm)", range=Range(2, None, integer=True))
    )
    lr: float = field(
        default=0.05,
        metadata=meta("SGD learning rate, cosine to 0", range=Range(0, 10, low_open=True)),
    )
    holdout: int = _positive("training images kept out of training to rank networks", 300)
    final_epochs: int = _positive(
        "epochs training the result and each uniform-α network from scratch", 15
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
    RESUMABLE = ("seeds", "final_epochs", "uniform", "measure_runs")


@dataclass
class AdaptConfig(LatencySearch):
    """One NetAdapt search: the seed network, the data, the latency target and the budgets.

    Every budget is counted in optimizer steps or epochs so that a search is reproducible.
    """

    model: str = field(
        default="mobilenet_v3_small", metadata=meta("the seed network's family", choices=ADAPTABLE)
    )
    width_mult: float = field(
        default=1.0,
        metadata=meta("the seed's α", range=Range(0, MAX_WIDTH_MULT, low_open=True)),
    )
    table: str | None = field(
        default=None,
        metadata=meta(
            "start from this table (a table.json, e.g. the block search's) instead of α: "
            "search, then adapt, is V3's pipeline"
        ),
    )
    steps: int = _positive("NetAdapt steps planned: each cuts (start − target) / steps", 6)
    seed_steps: int = _positive("SGD steps training the seed network", 600)
    finetune_steps: int = _positive("short-term fine-tune of each proposal, SGD steps", 150)
    divisor: int = field(
        default=8,
        metadata=meta(
            "cut channels stay divisible by this (4 below 16 channels)", choices=(1, 2, 4, 8, 16)
        ),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.table is not None and self.width_mult != 1.0:
            raise ConfigError("--table gives every layer's width: leave --width-mult at 1")


@dataclass
class BlockSearchConfig(LatencySearch):
    """One platform-aware block search (V3 paper, Section 5.1): the space around a V3 base,
    the supernet's training, regularised evolution's budget and MnasNet's reward.

    The target is ``target_ms`` or ``target_ratio`` × the base's predicted latency.
    """

    model: str = field(
        default="mobilenet_v3_small",
        metadata=meta("the space's base network (its stem, stages and head)", choices=SEARCH_BASES),
    )
    space: dict = field(
        default_factory=dict,
        metadata=meta("the space's choices (SearchSpace's keywords; default: its own)", cli=False),
    )
    w: float = field(
        default=-0.15,
        metadata=meta(
            "MnasNet's reward exponent: accuracy × (latency / target)^w (−0.07 in MnasNet, "
            "−0.15 in the V3 paper for small models)",
            range=Range(-1, 0),
        ),
    )
    supernet_epochs: int = _positive("epochs training the weight-sharing supernet", 20)
    recalibration_batches: int = _positive(
        "training batches recomputing a candidate's BatchNorm statistics", 8
    )
    population: int = field(
        default=16,
        metadata=meta("regularised evolution's population", range=Range(2, None, integer=True)),
    )
    tournament: int = field(
        default=4,
        metadata=meta(
            "candidates drawn from the population to pick each parent",
            range=Range(1, None, integer=True),
        ),
    )
    cycles: int = _positive("children scored after the first population", 64)
    chunk: int = _positive(
        "children made from one population and scored together (split over torchrun's "
        "processes; the result does not depend on their number)",
        4,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tournament > self.population:
            raise ConfigError(
                f"--tournament {self.tournament} is more than --population {self.population}"
            )
        from mobilenets.models.search_space import SearchSpace

        if not isinstance(self.space, dict):
            raise ConfigError(f"the search space must be a mapping of settings, got {self.space!r}")
        self.space = {**self.space, "base": self.model}
        # one line if it is empty or contradictory; kept as data, in full, for the state file
        self.space = SearchSpace.from_dict(self.space).to_dict()
