"""Platform-aware block search (V3 paper, Section 5.1; MnasNet, Tan et al. 2019) on this
machine's measured latency, with a weight-sharing supernet for accuracy.

1. **Supernet.** The space's largest candidate is trained once through the one training loop
   (:func:`~mobilenets.training.fit`, resumable, under torchrun too), one uniformly drawn path
   per step (single-path one-shot, Guo et al. 2019), on the train split less ``holdout``
   images (:class:`~mobilenets.models.supernet.SuperNet`).
2. **Proxy accuracy.** A candidate is cut out of the supernet with its weights, its BatchNorm
   statistics recomputed on ``recalibration_batches`` training batches, and scored on the
   held-out images.
3. **Latency** is NetAdapt's per-layer table (:mod:`mobilenets.adapt.lut`), measured on first
   use for every layer a candidate has, on the chosen runtime.
4. **Search.** Regularised evolution (Real et al. 2019): a random population, then children of
   tournament winners (one choice mutated), the oldest dying; each scored by MnasNet's reward
   ACC × (LAT / TAR)^w (a soft constraint: the same w on both sides of the target, as the V3
   paper). Evolution, not MnasNet's REINFORCE controller: with a proxy that scores a candidate
   in under a second there is no controller to train, the population is the whole state (a
   killed search resumes from its list of scored candidates), and children of one population
   are scored side by side across processes.

Every scored candidate is saved (``search_state.json``, atomically) before the next chunk
starts; a rerun with the same settings continues and scores nothing twice.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
import numpy as np
import torch
import torch.distributed as dist

from mobilenets.adapt.config import BlockSearchConfig
from mobilenets.adapt.lut import LatencyTable, layer_specs
from mobilenets.adapt.run import (
    comparison_rows,
    measure,
    plot_comparison,
    train_comparison,
    uniform_tables,
    write_rows,
)
from mobilenets.data import build_dataset
from mobilenets.data.holdout import holdout_indices
from mobilenets.errors import ConfigError, DamagedFileError, display
from mobilenets.fileio import check_writable_folder, new_figure, save_figure, write_text_atomic
from mobilenets.models import create_model
from mobilenets.models.search_space import SearchSpace
from mobilenets.models.supernet import SuperNet, recalibrate_bn
from mobilenets.models.table import write_table
from mobilenets.schema import Percent, Positive, Record, read_settings, read_state
from mobilenets.training import TrainConfig, distributed, fit
from mobilenets.training.distributed import read_env
from mobilenets.training.engine import log_to_stderr

#: The largest number of candidates a search state may hold.
MAX_CANDIDATES = 100_000


class Scored(Record):
    """One scored candidate of ``search_state.json``."""

    index: Annotated[int, msgspec.Meta(ge=0, lt=MAX_CANDIDATES)]
    parent: Annotated[int, msgspec.Meta(ge=-1, lt=MAX_CANDIDATES)]  # -1: the first population
    candidate: dict[str, object]
    predicted_ms: Positive
    proxy_top1: Percent
    reward: Annotated[float, msgspec.Meta(ge=0, le=1e6)]


class BlockSearchState(Record):
    """``search_state.json``: the settings and every scored candidate, in order."""

    config: dict[str, object]
    candidates: Annotated[list[Scored], msgspec.Meta(max_length=MAX_CANDIDATES)]


def read_space(path: str | Path) -> dict:
    """A search space's settings from a JSON file (``--space``), checked: one line naming the
    file and the first wrong setting."""
    space = read_settings(path, "search space")
    try:
        return SearchSpace.from_dict(space).to_dict()
    except ConfigError as err:
        raise ConfigError(f"{display(path)}: {err}") from None


def reward(top1: float, latency_ms: float, target_ms: float, w: float) -> float:
    """MnasNet's objective (Tan et al. 2019, Equation 2, α = β = w): ACC × (LAT / TAR)^w."""
    return top1 / 100 * (latency_ms / target_ms) ** w


@dataclass
class ProxyData:
    """What a candidate is scored on: batches recomputing its BatchNorm statistics (training
    images not held out) and the held-out images with their labels, all in memory."""

    recalibration: list[torch.Tensor]
    holdout_images: torch.Tensor
    holdout_labels: torch.Tensor
    classes: tuple[str, ...]


def proxy_data(config: BlockSearchConfig) -> ProxyData:
    """The held-out images (the split :class:`~mobilenets.training.TrainConfig`'s ``holdout``
    keeps out of the supernet's training, same seed) and a seeded draw of the others."""
    plain = build_dataset(config.data, "train", config.resolution, augment=False)
    count = config.recalibration_batches * config.batch_size
    try:
        held, rest = holdout_indices(len(plain), config.holdout, config.seed, config.batch_size + 1)
    except ConfigError as err:
        raise ConfigError(f"{display(config.data)}: {err}") from None
    drawn = np.random.default_rng(config.seed + 1).permutation(rest)[:count].tolist()
    images = torch.stack([plain[i][0] for i in drawn])
    held_items = [plain[i] for i in held]
    return ProxyData(
        recalibration=list(images.split(config.batch_size)),
        holdout_images=torch.stack([x for x, _ in held_items]),
        holdout_labels=torch.tensor([y for _, y in held_items]),
        classes=tuple(str(c) for c in plain.classes),
    )


def proxy_top1(supernet: SuperNet, candidate: dict, data: ProxyData) -> float:
    """Held-out top-1 (%) of ``candidate`` on the supernet's weights, BN recalibrated."""
    network = recalibrate_bn(supernet.subnet(candidate), data.recalibration)
    with torch.inference_mode():
        logits = torch.cat([network(x) for x in data.holdout_images.split(256)])
    return 100.0 * (logits.argmax(1) == data.holdout_labels).float().mean().item()


def _on_main(compute: Callable[[], object]) -> object:
    """``compute()`` on rank 0 only (the latency table is measured by one process), its result
    given to every process."""
    if not (dist.is_available() and dist.is_initialized()):
        return compute()
    box = [compute() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _shared(scores: list[float | None]) -> list[float]:
    """Each process scored its share (``None`` elsewhere): every process gets all scores."""
    if not (dist.is_available() and dist.is_initialized()):
        return scores
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, scores)
    return [next(s[i] for s in gathered if s[i] is not None) for i in range(len(scores))]


class BlockSearch:
    """One search's state on disk (``search_state.json``) and its latency model."""

    def __init__(self, config: BlockSearchConfig, out: Path, log: Callable[[str], None]) -> None:
        self.config, self.out, self.log = config, Path(out), log
        self.space = SearchSpace.from_dict(config.space)
        self.state_path = self.out / "search_state.json"
        self.lut = LatencyTable(config.backend, config.threads, config.lut_runs)
        self.scored: list[dict] = []
        self.env = read_env()
        if self.state_path.exists():
            self._resume()

    def _resume(self) -> None:
        saved = read_state(self.state_path, BlockSearchState, "block search state")
        skip = (*BlockSearchConfig.RESUMABLE, "cycles")  # more cycles continue a search
        mine = {k: v for k, v in self.config.to_dict().items() if k not in skip}
        theirs = {k: v for k, v in saved.config.items() if k not in skip}
        if mine != theirs:
            changed = sorted(k for k in mine if mine[k] != theirs.get(k))
            raise ConfigError(
                f"{display(self.out)} holds a search with other settings ({', '.join(changed)}); "
                "use another --out or the same settings to continue it"
            )
        for i, record in enumerate(saved.candidates):
            where = f"{display(self.state_path)}: candidates[{i}]"
            if record.index != i or record.parent >= i:
                raise DamagedFileError(f"{where} is out of order (index {record.index})")
            try:
                self.space.check(record.candidate)
            except ConfigError as err:
                raise DamagedFileError(f"{where}.candidate: {err}") from None
            self.scored.append(msgspec.structs.asdict(record))
        self.log(f"resuming the search in {display(self.out)} after {len(self.scored)} candidates")

    def predict(self, candidate: dict, num_classes: int) -> float:
        table = self.space.table(candidate)
        specs = layer_specs(table, "v3", self.config.resolution, num_classes)
        return self.lut.predict(specs)

    def target(self, num_classes: int) -> float:
        """``target_ms``, or ``target_ratio`` × the base network's (α = 1) predicted latency;
        refused (one line) when even the space's smallest candidate is predicted slower."""
        config = self.config

        def compute() -> tuple[float, float]:
            if config.target_ms is not None:
                target = config.target_ms
            else:
                base = create_model(config.model).table
                target = config.target_ratio * self.lut.predict(
                    layer_specs(base, "v3", config.resolution, num_classes)
                )
            return target, self.predict(self.space.smallest(), num_classes)

        target, smallest = _on_main(compute)
        if smallest > target:
            raise ConfigError(
                f"the latency target {target:.3f} ms is below this space's smallest candidate, "
                f"predicted at {smallest:.3f} ms ({config.backend}, {config.threads} thread(s), "
                f"{config.resolution} px): raise the target or add smaller choices to the space"
            )
        return target

    # --- the search ----------------------------------------------------------------------------

    def run(self, supernet: SuperNet, data: ProxyData, target: float) -> list[dict]:
        """Evolve until ``population + cycles`` candidates are scored; all of them, in order."""
        config = self.config
        total = config.population + config.cycles
        cache = {json.dumps(s["candidate"], sort_keys=True): s for s in self.scored}
        while len(self.scored) < total:
            first = len(self.scored)
            if first < config.population:  # the first population, drawn at random
                count = config.population - first
            else:
                count = min(config.chunk, total - first)
            rng = random.Random(f"{config.seed}:{first}")  # a resumed chunk draws the same
            children = [self._child(rng) for _ in range(count)]
            self._score(children, supernet, data, target, cache)
            if self.env.is_main:
                write_text_atomic(
                    self.state_path,
                    json.dumps({"config": config.to_dict(), "candidates": self.scored}, indent=1),
                )
            best = max(self.scored, key=lambda s: s["reward"])
            self.log(
                f"{len(self.scored)}/{total} candidates scored; best reward {best['reward']:.4f} "
                f"({best['proxy_top1']:.2f}% proxy, {best['predicted_ms']:.3f} ms predicted)"
            )
        return self.scored

    def _child(self, rng: random.Random) -> tuple[dict, int]:
        """A random candidate while the first population fills; then the mutated winner of a
        tournament among the living population (the newest ``population``)."""
        config = self.config
        if len(self.scored) < config.population:
            return self.space.sample(rng), -1
        living = self.scored[-config.population :]
        parent = max(rng.sample(living, config.tournament), key=lambda s: s["reward"])
        return self.space.mutate(parent["candidate"], rng), parent["index"]

    def _score(
        self,
        children: list[tuple[dict, int]],
        supernet: SuperNet,
        data: ProxyData,
        target: float,
        cache: dict,
    ) -> None:
        """Latency (rank 0) and proxy accuracy (each process its share) of a chunk; a
        candidate scored before keeps its scores."""
        classes = len(data.classes)
        keys = [json.dumps(c, sort_keys=True) for c, _ in children]
        latencies = _on_main(lambda: [self.predict(c, classes) for c, _ in children])
        scores = [
            (cache[k]["proxy_top1"] if k in cache else proxy_top1(supernet, c, data))
            if i % self.env.world_size == self.env.rank
            else None
            for i, ((c, _), k) in enumerate(zip(children, keys, strict=True))
        ]
        scores = _shared(scores)
        for (candidate, parent), key, ms, top1 in zip(
            children, keys, latencies, scores, strict=True
        ):
            record = {
                "index": len(self.scored),
                "parent": parent,
                "candidate": candidate,
                "predicted_ms": ms,
                "proxy_top1": top1,
                "reward": reward(top1, ms, target, self.config.w),
            }
            self.scored.append(record)
            cache.setdefault(key, record)


def train_supernet(config: BlockSearchConfig, out: Path, log: Callable[[str], None]) -> SuperNet:
    """The supernet trained through the one training loop in ``out/supernet`` (resumed if a
    run is there; a finished run is read back)."""
    space = SearchSpace.from_dict(config.space)
    folder = out / "supernet"
    train = TrainConfig(
        model=config.model,
        model_kwargs={"table": space.table(space.largest())},
        supernet=config.space,
        data=config.data,
        resolution=config.resolution,
        epochs=config.supernet_epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        holdout=config.holdout,
        seed=config.seed,
        out=str(folder),
        resume=(folder / "checkpoint.pt").exists(),
        progress=False,
    )
    log(
        f"training the supernet ({space.size():.3g} candidates) for {config.supernet_epochs} "
        f"epochs in {display(folder)}"
    )
    return fit(train, log=log).model.eval()


def search_blocks(
    config: BlockSearchConfig, out: str | Path, log: Callable[[str], None] = log_to_stderr
) -> dict:
    """The whole search (resumed where it stopped), then the chosen network and the uniform-α
    ones trained from scratch and timed interleaved. Writes ``search.csv`` (every candidate),
    ``table.json`` (the chosen one), ``comparison.csv``, ``search.png`` and ``search.json``."""
    env = distributed.init(distributed.pick_device("auto", distributed.read_env()))
    if env.is_main:  # one process checks (and makes) the folder; the others wait for it
        out = check_writable_folder(out, data=[config.data])
    else:
        out, log = Path(out), lambda message: None
    distributed.barrier()
    search = BlockSearch(config, out, log)  # a state with other settings: refused before work
    data = proxy_data(config)
    target = search.target(len(data.classes))
    supernet = train_supernet(config, out, log)
    scored = search.run(supernet, data, target)
    best = max(scored, key=lambda s: s["reward"])
    table = search.space.table(best["candidate"])
    main = search.env.is_main
    if main:
        write_table(table, out / "table.json")
        _write_candidates(out / "search.csv", scored, search.space)
    log(
        f"chosen: candidate {best['index']}, {best['proxy_top1']:.2f}% proxy, "
        f"{best['predicted_ms']:.3f} ms predicted (target {target:.3f} ms)"
    )
    runs = train_comparison(config, out, table, log)  # under torchrun, on every process
    if not main:  # the timing is one process's
        return {"target_ms": target, "chosen": best}
    networks = {"searched": table, **uniform_tables(config)}
    log(f"timing {len(networks)} networks on {config.backend}, interleaved")
    measured = measure(networks, config, len(data.classes), config.measure_runs)
    rows = comparison_rows(config, runs, measured, "searched", "searched")
    for row in rows:
        specs = layer_specs(networks[row["network"]], "v3", config.resolution, len(data.classes))
        row["predicted_ms"] = search.lut.predict(specs)
    write_rows(out / "comparison.csv", rows)
    plot_search(out / "search.png", scored, best, target, rows, config)
    result = {"target_ms": target, "chosen": best, "table": table, "comparison": rows}
    write_text_atomic(out / "search.json", json.dumps(result, indent=1))
    return result


def _write_candidates(path: Path, scored: list[dict], space: SearchSpace) -> None:
    rows = [
        {
            **{k: s[k] for k in ("index", "parent", "predicted_ms", "proxy_top1", "reward")},
            "candidate": json.dumps(s["candidate"]),
            "table": json.dumps(space.table(s["candidate"])),
        }
        for s in scored
    ]
    write_rows(path, rows)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other is faster and more accurate than, fastest first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_search(
    path: Path,
    scored: list[dict],
    best: dict,
    target: float,
    rows: list[dict],
    config: BlockSearchConfig,
) -> None:
    """Left: every candidate's proxy accuracy against predicted latency, in search order, the
    Pareto front, the target and the chosen one. Right: trained from scratch, the chosen
    network beside uniform α, against measured latency."""
    fig = new_figure(figsize=(12, 4.8))
    left, right = fig.subplots(1, 2)
    points = [(s["predicted_ms"], s["proxy_top1"]) for s in scored]
    dots = left.scatter(*zip(*points, strict=True), c=range(len(points)), cmap="viridis", s=14)
    fig.colorbar(dots, ax=left, label="candidate (search order)")
    front = pareto_front(points)
    left.plot(*zip(*(points[i] for i in front), strict=True), "k--", lw=1, label="Pareto front")
    left.axvline(target, color="tab:red", lw=1, label=f"target {target:.3f} ms")
    left.plot(best["predicted_ms"], best["proxy_top1"], "r*", ms=16, label="chosen (best reward)")
    left.set_xlabel(f"predicted latency, ms (per-layer table, {config.backend})")
    left.set_ylabel("proxy top-1 % (supernet weights, held-out images)")
    left.set_title(f"regularised evolution, reward = ACC × (LAT/TAR)^{config.w:g}")
    left.legend(fontsize=8)
    plot_comparison(right, rows, config, "searched")
    fig.tight_layout()
    save_figure(fig, path)
