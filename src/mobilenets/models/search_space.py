"""The block search space of MobileNetV3's platform-aware search (V3 paper, Section 5.1;
MnasNet's factorized hierarchical space, Tan et al. 2019, Section 4.1).

The base network's table (V3-Small or V3-Large) fixes the stem, the head and the stages (a stage
starts where the stride is 2 or the width changes; its first block takes the stride). A
*candidate* chooses, per stage, a depth (the base's plus a delta) and an output width (the base's
times a factor), and per block a depthwise kernel, an expansion ratio (hidden channels = ratio ×
the block's input, rounded as the papers round channels), squeeze-excite on or off, and ReLU or
h-swish. Every candidate is a table (:mod:`mobilenets.models.table`), so it builds, saves,
exports, is timed by NetAdapt's latency table and adapts like any network.

A candidate, as JSON data::

    {"stages": [{"width": 1.0, "blocks": [{"k": 5, "e": 4.0, "se": true, "nl": "HS"}, ...]}, ...]}

(the depth of a stage is its number of blocks; a stage keeps at least one, whatever the deltas).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mobilenets.errors import ConfigError
from mobilenets.layers import make_divisible

KERNELS = (3, 5, 7)
NONLINEARITIES = ("RE", "HS")
BASES = ("mobilenet_v3_small", "mobilenet_v3_large")
#: The settings a space is made of, as :meth:`SearchSpace.to_dict` writes them.
SPACE_FIELDS = ("base", "kernels", "expansions", "se", "nl", "depths", "widths")


@dataclass(frozen=True)
class Stage:
    """A stage of the base table: its stride (taken by its first block), output channels and
    number of blocks."""

    stride: int
    out: int
    depth: int


def base_table(base: str) -> dict:
    """The paper's table of ``base`` (α = 1)."""
    from mobilenets.models.mobilenet_v3 import (
        V3_LARGE_LAST,
        V3_LARGE_TABLE_1,
        V3_SMALL_LAST,
        V3_SMALL_TABLE_2,
        v3_table,
    )

    if base not in BASES:
        raise ConfigError(f"the search space's base must be one of {BASES}, got {base!r}")
    if base == "mobilenet_v3_small":
        return v3_table(V3_SMALL_TABLE_2, V3_SMALL_LAST)
    return v3_table(V3_LARGE_TABLE_1, V3_LARGE_LAST)


def stages_of(table: dict) -> list[Stage]:
    """The stages of a table: a new one where the stride is 2 or the output width changes."""
    stages: list[Stage] = []
    previous = None
    for row in table["rows"]:
        if row["s"] == 2 or row["out"] != previous:
            stages.append(Stage(row["s"], row["out"], 1))
        else:
            last = stages[-1]
            stages[-1] = Stage(last.stride, last.out, last.depth + 1)
        previous = row["out"]
    return stages


def _choices(name: str, values: object, allowed: str, valid: Callable) -> tuple:
    """A non-empty tuple of distinct valid choices, or one line saying what is allowed."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ConfigError(f"the search space's {name} must be a list of {allowed}, got {values!r}")
    values = tuple(values)
    if not values:
        raise ConfigError(f"the search space's {name} is empty: give at least one of {allowed}")
    bad = [v for v in values if not valid(v)]
    if bad:
        raise ConfigError(f"the search space's {name} must be {allowed}, got {bad[0]!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"the search space's {name} lists a choice twice: {list(values)}")
    return values


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclass(frozen=True)
class SearchSpace:
    """Per-block and per-stage choices around a V3 base (defaults: V3's own choices, kernels up
    to 7 as MnasNet's, expansion 3/4/6, stage depth ±1, stage width ×0.75/1/1.25)."""

    base: str = "mobilenet_v3_small"
    kernels: tuple[int, ...] = KERNELS
    expansions: tuple[float, ...] = (3.0, 4.0, 6.0)
    se: tuple[bool, ...] = (False, True)
    nl: tuple[str, ...] = NONLINEARITIES
    depths: tuple[int, ...] = (-1, 0, 1)
    widths: tuple[float, ...] = (0.75, 1.0, 1.25)
    stages: tuple[Stage, ...] = field(init=False, repr=False, compare=False)
    stage_depths: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = base_table(self.base)
        checks = {
            "kernels": ("3, 5 or 7", lambda v: v in KERNELS and not isinstance(v, bool)),
            "expansions": ("ratios from 1 to 12", lambda v: _number(v) and 1 <= v <= 12),
            "se": ("true or false", lambda v: isinstance(v, bool)),
            "nl": ("'RE' or 'HS'", lambda v: v in NONLINEARITIES),
            "depths": (
                "whole numbers of blocks from -4 to 4 (added to each stage's)",
                lambda v: isinstance(v, int) and not isinstance(v, bool) and -4 <= v <= 4,
            ),
            "widths": ("factors from 0.25 to 4", lambda v: _number(v) and 0.25 <= v <= 4),
        }
        for name, (allowed, valid) in checks.items():
            object.__setattr__(self, name, _choices(name, getattr(self, name), allowed, valid))
        stages = tuple(stages_of(table))
        depths = tuple(tuple(sorted({max(1, st.depth + d) for d in self.depths})) for st in stages)
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "stage_depths", depths)  # a stage keeps at least one block
        object.__setattr__(self, "_base", table)

    # --- as data ---------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The space as JSON data (:meth:`from_dict` reads it back)."""
        return {name: getattr(self, name) for name in SPACE_FIELDS} | {
            name: list(getattr(self, name)) for name in SPACE_FIELDS if name != "base"
        }

    @classmethod
    def from_dict(cls, data: object) -> SearchSpace:
        """A space from JSON data (a search's settings, a file): unknown keys are one line."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a search space must be a mapping of {SPACE_FIELDS}, got {data!r}")
        unknown = sorted(set(data) - set(SPACE_FIELDS))
        if unknown:
            raise ConfigError(
                f"a search space has no setting {unknown[0]!r}; it takes {', '.join(SPACE_FIELDS)}"
            )
        return cls(**dict(data))

    # --- candidates ---------------------------------------------------------------------------

    def sample(self, rng: random.Random) -> dict:
        """A candidate drawn uniformly: every choice independently (single-path uniform
        sampling, Guo et al. 2019)."""
        return {
            "stages": [
                {
                    "width": rng.choice(self.widths),
                    "blocks": [self._block(rng) for _ in range(rng.choice(depths))],
                }
                for depths in self.stage_depths
            ]
        }

    def _block(self, rng: random.Random) -> dict:
        return {
            "k": rng.choice(self.kernels),
            "e": rng.choice(self.expansions),
            "se": rng.choice(self.se),
            "nl": rng.choice(self.nl),
        }

    def largest(self) -> dict:
        """The candidate every other one is a slice of: deepest, widest, largest kernel and
        expansion, SE everywhere (the supernet's shape)."""
        block = {"k": max(self.kernels), "e": max(self.expansions), "se": True in self.se}
        block["nl"] = self.nl[0]
        return {
            "stages": [
                {"width": max(self.widths), "blocks": [dict(block) for _ in range(max(depths))]}
                for depths in self.stage_depths
            ]
        }

    def smallest(self) -> dict:
        """The cheapest corner of the space: shallowest, narrowest, smallest kernel and
        expansion, no SE where the space allows it, ReLU where it allows it."""
        block = {"k": min(self.kernels), "e": min(self.expansions), "se": False not in self.se}
        block["nl"] = "RE" if "RE" in self.nl else self.nl[0]
        return {
            "stages": [
                {"width": min(self.widths), "blocks": [dict(block) for _ in range(min(depths))]}
                for depths in self.stage_depths
            ]
        }

    def mutate(self, candidate: dict, rng: random.Random) -> dict:
        """A copy of ``candidate`` with one choice redrawn (regularised evolution's mutation,
        Real et al. 2019): one block's kernel, expansion, SE or nonlinearity, or one stage's
        width or depth (a block added as a copy of the stage's last, or the last removed)."""
        child = json.loads(json.dumps(self.check(candidate)))
        for _ in range(100):  # a mutation that changes nothing (a single choice) is redrawn
            stage_index = rng.randrange(len(child["stages"]))
            stage = child["stages"][stage_index]
            what = rng.choice(("k", "e", "se", "nl", "width", "depth"))
            if what == "width":
                options = [w for w in self.widths if w != stage["width"]]
                if options:
                    stage["width"] = rng.choice(options)
                    return child
            elif what == "depth":
                depths = [d for d in self.stage_depths[stage_index] if d != len(stage["blocks"])]
                if depths:
                    depth = rng.choice(depths)
                    blocks = stage["blocks"]
                    stage["blocks"] = (blocks + [dict(blocks[-1]) for _ in range(depth)])[:depth]
                    return child
            else:
                block = rng.choice(stage["blocks"])
                allowed = {"k": self.kernels, "e": self.expansions, "se": self.se, "nl": self.nl}
                options = [v for v in allowed[what] if v != block[what]]
                if options:
                    block[what] = rng.choice(options)
                    return child
        return child  # a space of one candidate

    def check(self, candidate: object) -> dict:
        """``candidate`` checked against this space (one line naming the first wrong entry)."""
        if not isinstance(candidate, Mapping) or not isinstance(candidate.get("stages"), list):
            raise ConfigError("a candidate must be {'stages': [...]}, one entry per stage")
        if len(candidate["stages"]) != len(self.stages):
            raise ConfigError(
                f"a candidate of this space has {len(self.stages)} stages, got "
                f"{len(candidate['stages'])}"
            )
        for i, (stage, depths) in enumerate(
            zip(candidate["stages"], self.stage_depths, strict=True)
        ):
            where = f"candidate stage {i + 1}"
            if not isinstance(stage, Mapping) or set(stage) != {"width", "blocks"}:
                raise ConfigError(f"{where} must have exactly the keys 'width' and 'blocks'")
            if stage["width"] not in self.widths:
                raise ConfigError(f"{where}: width {stage['width']!r} is not one of {self.widths}")
            blocks = stage["blocks"]
            if not isinstance(blocks, list) or len(blocks) not in depths:
                raise ConfigError(
                    f"{where}: {len(blocks) if isinstance(blocks, list) else blocks!r} blocks; "
                    f"this space allows {list(depths)}"
                )
            for j, block in enumerate(blocks):
                self._check_block(block, f"{where}, block {j + 1}")
        return candidate

    def _check_block(self, block: object, where: str) -> None:
        if not isinstance(block, Mapping) or set(block) != {"k", "e", "se", "nl"}:
            raise ConfigError(f"{where} must have exactly the keys 'k', 'e', 'se' and 'nl'")
        for key, allowed in (
            ("k", self.kernels), ("e", self.expansions), ("se", self.se), ("nl", self.nl)
        ):  # fmt: skip
            if block[key] not in allowed or isinstance(block[key], bool) != (key == "se"):
                raise ConfigError(f"{where}: {key} {block[key]!r} is not one of {allowed}")

    def table(self, candidate: dict) -> dict:
        """The V3 table of a candidate: the base's stem and head around the chosen blocks."""
        candidate = self.check(candidate)
        rows, cin = [], self._base["stem"]
        for stage, base in zip(candidate["stages"], self.stages, strict=True):
            out = make_divisible(base.out * stage["width"])
            for j, block in enumerate(stage["blocks"]):
                rows.append(
                    {
                        "k": block["k"],
                        "exp": make_divisible(cin * block["e"]),
                        "out": out,
                        "se": block["se"],
                        "nl": block["nl"],
                        "s": base.stride if j == 0 else 1,
                    }
                )
                cin = out
        return {**self._base, "rows": rows}

    def size(self) -> int:
        """How many candidates the space holds."""
        per_block = len(self.kernels) * len(self.expansions) * len(self.se) * len(self.nl)
        total = 1
        for depths in self.stage_depths:
            total *= len(self.widths) * sum(per_block**depth for depth in depths)
        return total
