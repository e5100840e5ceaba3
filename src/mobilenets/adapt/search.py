"""NetAdapt (Yang et al. 2018, Algorithm 1; the V3 paper's Section 5.2): cut a trained network
layer by layer until a latency target, measuring rather than counting.

Each step asks every unit (a block's expansion, a residual group's output, see
:mod:`mobilenets.adapt.prune`) for the widest cut that lowers the predicted latency (the
per-layer lookup table, :mod:`mobilenets.adapt.lut`) by at least this step's share δ of the way
to the target; each proposal inherits the current weights (largest-L1 filters), is fine-tuned
for ``finetune_steps`` and scored on held-out training images; the proposal losing the least
accuracy per millisecond saved is kept. The search ends when the prediction meets the target.

Every finished proposal and step is saved in the output folder (atomically), so a killed search
continues where it stopped and repeats no fine-tune.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
import torch
from torch import nn
from torch.utils.data import Subset

from mobilenets.adapt.config import AdaptConfig
from mobilenets.adapt.lut import LatencyTable, family_of, layer_specs
from mobilenets.adapt.prune import Unit, cut, granularity, inherit, narrower, units, width
from mobilenets.data import build_dataset
from mobilenets.data.holdout import holdout_indices
from mobilenets.errors import ConfigError, DamagedFileError, display
from mobilenets.fileio import write_text_atomic
from mobilenets.models import create_model
from mobilenets.models.table import check_table, read_table
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.safetensors import load_weights, save_weights
from mobilenets.schema import Percent, Positive, Record, Text, read_state
from mobilenets.training.engine import evaluate, make_loader
from mobilenets.training.state import parameter_groups


@dataclass
class SearchData:
    """The training images split in two: fine-tuning, and the held-out ones ranking proposals."""

    train: torch.utils.data.DataLoader
    holdout: torch.utils.data.DataLoader
    classes: tuple[str, ...]


def search_data(config: AdaptConfig) -> SearchData:
    """A seeded split of the train split: ``holdout`` images kept out of every fine-tune."""
    augmented = build_dataset(config.data, "train", config.resolution)
    plain = build_dataset(config.data, "train", config.resolution, augment=False)
    try:
        held, rest = holdout_indices(len(plain), config.holdout, config.seed, config.batch_size + 1)
    except ConfigError as err:
        raise ConfigError(f"{display(config.data)}: {err}") from None
    generator = torch.Generator().manual_seed(config.seed)
    train = make_loader(
        Subset(augmented, rest),
        config.batch_size,
        shuffle=True,
        generator=generator,
        drop_last=True,
    )
    holdout = make_loader(Subset(plain, held), 256, shuffle=False)
    return SearchData(train, holdout, tuple(str(c) for c in plain.classes))


def train_steps(
    model: nn.Module, loader: torch.utils.data.DataLoader, steps: int, lr: float, seed: int
) -> nn.Module:
    """``steps`` SGD steps (momentum 0.9, Nesterov, weight decay 4e-5 off BN and depthwise),
    learning rate cosine from ``lr`` to 0: NetAdapt's short-term fine-tune, and the seed's."""
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(parameter_groups(model, 4e-5), lr=lr, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    done = 0
    while done < steps:
        for x, y, _, _ in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            done += 1
            if done == steps:
                break
    return model.eval()


def holdout_top1(model: nn.Module, data: SearchData) -> float:
    return evaluate(model, data.holdout, device=torch.device("cpu"), progress=False).top1


class KeptStep(Record):
    """One kept step of ``state.json``: the table, its predicted latency and its accuracy."""

    step: Annotated[int, msgspec.Meta(ge=0, le=10_000)]
    cut: Text
    table: dict[str, object]
    predicted_ms: Positive
    holdout_top1: Percent
    weights: Annotated[str, msgspec.Meta(pattern=r"^step_\d{3,}\.safetensors$")]


class SearchState(Record):
    """``state.json``: the search's settings and its kept steps, seed first."""

    config: dict[str, object]
    history: Annotated[list[KeptStep], msgspec.Meta(max_length=10_000)]


class ProposalResult(Record):
    """A finished proposal's ``NN.json``: its held-out top-1 after the short fine-tune."""

    holdout_top1: Percent


@dataclass
class Proposal:
    unit: Unit
    table: dict
    predicted_ms: float
    top1: float | None = None  # held-out top-1 after the short fine-tune


class Search:
    """One search's state on disk: ``state.json`` (the settings and the kept steps) and the
    weights of the current network and of each finished proposal of the running step."""

    def __init__(self, config: AdaptConfig, out: Path, log: Callable[[str], None]) -> None:
        self.config, self.out, self.log = config, Path(out), log
        self.family = family_of(config.model)
        self.state_path = self.out / "state.json"
        self.lut = LatencyTable(config.backend, config.threads, config.lut_runs)
        self.history: list[dict] = []
        if self.state_path.exists():
            self._resume()

    def _resume(self) -> None:
        saved = read_state(self.state_path, SearchState, "NetAdapt state")
        mine = {k: v for k, v in self.config.to_dict().items() if k not in AdaptConfig.RESUMABLE}
        theirs = {k: v for k, v in saved.config.items() if k not in AdaptConfig.RESUMABLE}
        theirs.setdefault("table", None)  # written before --table
        if mine != theirs:
            changed = sorted(k for k in mine if mine[k] != theirs.get(k))
            raise ConfigError(
                f"{display(self.out)} holds a search with other settings ({', '.join(changed)}); "
                "use another --out or the same settings to continue it"
            )
        self.history = [self._checked(i, step) for i, step in enumerate(saved.history)]
        self.log(f"resuming the search in {self.out} after step {len(self.history) - 1}")

    def _checked(self, index: int, step: KeptStep) -> dict:
        """A kept step read back: numbered in order, its table one this family builds, its
        weights there."""
        where = f"{display(self.state_path)}: history[{index}]"
        if step.step != index:
            raise DamagedFileError(f"{where}.step is {step.step}, expected {index}")
        try:
            step.table = check_table(step.table, self.family)
        except ConfigError as err:
            raise DamagedFileError(f"{where}.table: {err}") from None
        if not (self.out / step.weights).is_file():
            raise DamagedFileError(
                f"{where}.weights: {display(self.out / step.weights)} is missing; restore it or "
                "start the search in another --out"
            )
        return msgspec.structs.asdict(step)

    def _save_state(self) -> None:
        state = {"config": self.config.to_dict(), "history": self.history}
        write_text_atomic(self.state_path, json.dumps(state, indent=1))

    def predict(self, table: dict) -> float:
        return self.lut.predict(
            layer_specs(table, self.family, self.config.resolution, len(self.classes))
        )

    def network(self, table: dict) -> nn.Module:
        return create_model(self.config.model, table=table, num_classes=len(self.classes))

    def save(self, model: nn.Module, path: Path) -> None:
        info = NetworkInfo(
            self.config.model,
            dict(model.model_kwargs),
            input_size=self.config.resolution,
            classes=self.classes,
            data=self.config.data,
            source="mobilenets adapt",
        )
        save_weights(model, path, info)

    # --- the search ----------------------------------------------------------------------------

    def run(self, data: SearchData) -> list[dict]:
        """The whole search (resumed where it stopped); the kept steps, seed first."""
        self.classes = data.classes
        config = self.config
        # resumed: the seed's prediction is kept with it; else predicted before the seed is
        # trained (a target already met trains nothing)
        start = self.history[0]["predicted_ms"] if self.history else self.predict(self.seed_table())
        if config.target_ms is not None and start <= config.target_ms:
            raise ConfigError(
                f"the seed {self.seed_name()} is predicted at {start:.3f} ms "
                f"({config.backend}, {config.threads} thread(s)), already within --target-ms "
                f"{config.target_ms:g}: nothing to cut; ask for a lower target or a wider seed"
            )
        if not self.history:
            self._seed(data)
        target = self.target()
        start = self.history[0]["predicted_ms"]
        delta = (start - target) / self.config.steps
        self.log(
            f"target {target:.3f} ms predicted (seed {start:.3f} ms); each step cuts ≥ "
            f"{delta:.3f} ms"
        )
        while self.history[-1]["predicted_ms"] > target:
            if not self._step(data, delta, target):
                self.log("no unit can be cut further: the target is out of reach")
                break
        return self.history

    def seed_table(self) -> dict:
        """The network the search starts from: ``--table``'s, or the family's at α."""
        if self.config.table is not None:
            return check_table(read_table(self.config.table), self.family)
        return create_model(self.config.model, width_mult=self.config.width_mult).table

    def seed_name(self) -> str:
        if self.config.table is not None:
            return f"{self.config.model} table {display(self.config.table)}"
        return f"{self.config.model} α={self.config.width_mult:g}"

    def target(self) -> float:
        if self.config.target_ms is not None:
            return self.config.target_ms
        return self.config.target_ratio * self.history[0]["predicted_ms"]

    def _seed(self, data: SearchData) -> None:
        """Train the seed network (uniform α, or ``--table``'s) and record it as step 0."""
        config = self.config
        model = self.network(self.seed_table())
        self.log(f"training the seed {self.seed_name()} for {config.seed_steps} steps")
        train_steps(model, data.train, config.seed_steps, config.lr, config.seed)
        path = self.out / "step_000.safetensors"
        seed = model.eval()
        self.save(seed, path)
        self._keep(0, None, seed.table, path, holdout_top1(seed, data))

    def _keep(self, step: int, unit: Unit | None, table: dict, path: Path, top1: float) -> None:
        self.history.append(
            {
                "step": step,
                "cut": unit.describe() if unit else "seed",
                "table": table,
                "predicted_ms": self.predict(table),
                "holdout_top1": top1,
                "weights": path.name,
            }
        )
        self._save_state()
        kept = self.history[-1]
        self.log(
            f"step {step}: {kept['cut']}: predicted {kept['predicted_ms']:.3f} ms, held-out "
            f"top-1 {top1:.2f}%"
        )

    def proposals(self, table: dict, delta: float) -> list[Proposal]:
        """For each unit, the widest cut predicted to save at least ``delta`` ms."""
        now = self.predict(table)
        step = granularity(table, self.family, self.config.divisor)
        found = []
        for unit in units(table, self.family):
            for channels in narrower(width(table, self.family, unit), step):
                candidate = cut(table, self.family, unit, channels)
                if candidate is None:
                    continue
                predicted = self.predict(candidate)
                if now - predicted >= delta:
                    found.append(Proposal(unit, candidate, predicted))
                    break
        return found

    def _step(self, data: SearchData, delta: float, target: float) -> bool:
        """One NetAdapt step: every proposal fine-tuned and scored, the best kept."""
        index = len(self.history)
        current = self.history[-1]
        folder = self.out / f"step_{index:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        # the last step only needs to reach the target, not a whole δ; where no single cut
        # saves δ (small layers, per-call costs), the step asks for half as much, down to δ/64
        need = min(delta, current["predicted_ms"] - target)
        proposals = self.proposals(current["table"], need)
        while not proposals and need > delta / 64:
            need /= 2
            proposals = self.proposals(current["table"], need)
        if not proposals:
            return False
        seed_net = load_weights(self.out / current["weights"])
        for j, proposal in enumerate(proposals):
            proposal.top1 = self._finetuned(proposal, seed_net, data, folder / f"{j:02d}")
            channels = width(proposal.table, self.family, proposal.unit)
            self.log(
                f"  step {index} proposal {j + 1}/{len(proposals)}: {proposal.unit.describe()} → "
                f"{channels} ch, {proposal.predicted_ms:.3f} ms, held-out {proposal.top1:.2f}%"
            )
        saved = current["predicted_ms"]

        def merit(p: Proposal) -> float:  # accuracy change per millisecond saved
            return (p.top1 - current["holdout_top1"]) / max(1e-9, saved - p.predicted_ms)

        best = max(proposals, key=merit)
        j = proposals.index(best)
        path = self.out / f"step_{index:03d}.safetensors"
        (folder / f"{j:02d}.safetensors").replace(path)
        self._keep(index, best.unit, best.table, path, best.top1)
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()
        return True

    def _finetuned(
        self, proposal: Proposal, current: nn.Module, data: SearchData, stem: Path
    ) -> float:
        """The proposal's held-out top-1 after its short fine-tune (read back if done before)."""
        result = stem.with_suffix(".json")
        if result.exists() and stem.with_suffix(".safetensors").exists():
            return read_state(result, ProposalResult, "NetAdapt proposal result").holdout_top1
        model = inherit(current, self.network(proposal.table), self.family)
        train_steps(
            model,
            data.train,
            self.config.finetune_steps,
            self.config.lr / 5,
            self.config.seed + len(self.history),
        )
        top1 = holdout_top1(model, data)
        self.save(model, stem.with_suffix(".safetensors"))
        write_text_atomic(result, json.dumps({"holdout_top1": top1}))
        return top1
