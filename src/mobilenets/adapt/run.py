"""``mobilenets adapt``: the search, then the comparison it exists for.

After the search (:mod:`mobilenets.adapt.search`), the adapted table and the uniform-α tables
(α ∈ {1, .75, .5, .35, .25}) are each trained from scratch with the same recipe and budget
(``final_epochs``, one run per training seed, through :func:`~mobilenets.training.fit`), and
every network (the search's steps too) is timed on the search's backend, interleaved in one
phase. Writes to the output folder:

- ``adapt.csv``: per search step, the cut, the table, predicted and measured latency, held-out
  top-1 after its short fine-tune;
- ``table.json``: the adapted table (``create_model(name, table=read_table(...))``);
- ``final/seed_N/`` and ``uniform_A/seed_N/``: the trained runs (checkpoint, weights, summary);
- ``comparison.csv`` and ``adapt.png``: val top-1 (mean and spread over seeds) against measured
  latency, the adapted network beside the uniform-α ones.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import msgspec
import torch

from mobilenets.adapt.config import AdaptConfig, LatencySearch
from mobilenets.adapt.lut import family_of
from mobilenets.adapt.search import Search, search_data
from mobilenets.complexity.latency import spread, time_interleaved
from mobilenets.export.folding import fold_bn
from mobilenets.export.runtimes import torch_threads
from mobilenets.fileio import (
    atomic_path,
    check_writable_folder,
    new_figure,
    save_figure,
    write_text_atomic,
)
from mobilenets.models import create_model
from mobilenets.models.table import write_table
from mobilenets.schema import Count, Percent, read_state
from mobilenets.training import TrainConfig, fit
from mobilenets.training.engine import log_to_stderr


def adapt(config: AdaptConfig, out: str | Path, log: Callable[[str], None] = log_to_stderr) -> dict:
    """Search, train the result and the uniform-α networks, time them all; the comparison."""
    family_of(config.model)  # V2 and V3 only: refused before anything starts
    out = check_writable_folder(out, data=[config.data])
    data = search_data(config)
    search = Search(config, out, log)
    history = search.run(data)
    write_table(history[-1]["table"], out / "table.json")
    networks = {f"step {h['step']}": h["table"] for h in history}
    runs = train_comparison(config, out, history[-1]["table"], log)
    networks.update(uniform_tables(config))
    log(f"timing {len(networks)} networks on {config.backend}, interleaved")
    measured = measure(networks, config, len(data.classes), config.measure_runs)
    for h in history:
        h["measured_ms"] = measured[f"step {h['step']}"][0]
    _write_steps(out / "adapt.csv", history)
    comparison = comparison_rows(config, runs, measured, "adapted", f"step {history[-1]['step']}")
    write_rows(out / "comparison.csv", comparison)
    plot_adapt(out / "adapt.png", comparison, history, config)
    result = {"history": history, "comparison": comparison, "target_ms": search.target()}
    write_text_atomic(out / "adapt.json", json.dumps(result, indent=1))
    return result


def uniform_tables(config: LatencySearch) -> dict[str, dict]:
    """The tables of the uniform-α networks a result is compared with, by label."""
    return {f"α={a:g}": create_model(config.model, width_mult=a).table for a in config.uniform}


def train_comparison(
    config: LatencySearch, out: Path, table: dict, log: Callable[[str], None]
) -> dict[tuple, dict]:
    """The result's table (``final/seed_N``) and each uniform α (``uniform_A/seed_N``) trained
    from scratch with the same recipe and budget: their summaries by (``"result"`` or α, seed)."""
    runs = {}
    for seed in range(config.seeds):
        runs["result", seed] = train_from_scratch(
            config, out / "final" / f"seed_{seed}", seed, log, table=table
        )
        for alpha in config.uniform:
            runs[alpha, seed] = train_from_scratch(
                config, out / f"uniform_{alpha:g}" / f"seed_{seed}", seed, log, width_mult=alpha
            )
    return runs


class RunSummary(msgspec.Struct):
    """What the comparison reads of a finished run's ``summary.json`` (other keys ignored)."""

    val_top1: Percent
    params: Count
    macs: Count


def train_from_scratch(
    config: LatencySearch,
    folder: Path,
    seed: int,
    log: Callable[[str], None],
    table: dict | None = None,
    width_mult: float | None = None,
) -> dict:
    """One from-scratch training of a table or a uniform α (resumed, or read back if done)."""
    summary = folder / "summary.json"
    if summary.exists():
        return msgspec.structs.asdict(read_state(summary, RunSummary, "run summary"))
    train = TrainConfig(
        model=config.model,
        width_mult=1.0 if table is not None else width_mult,
        model_kwargs={"table": table} if table is not None else {},
        data=config.data,
        resolution=config.resolution,
        epochs=config.final_epochs,
        batch_size=config.batch_size,
        seed=seed,
        out=str(folder),
        resume=(folder / "checkpoint.pt").exists(),
        progress=False,
    )
    what = "the result's table" if table is not None else f"α={width_mult:g}"
    log(f"training {what} from scratch, seed {seed}, {config.final_epochs} epochs")
    return fit(train, log=lambda message: None).summary


@torch.inference_mode()
def measure(
    networks: dict[str, dict], config: LatencySearch, num_classes: int, runs: int = 300
) -> dict[str, tuple[float, float, float]]:
    """Median, p10, p90 (ms) of each table's network, batch 1, on the search's backend and
    thread count, all timed interleaved. Sub-millisecond networks need many rounds: with 50,
    the seed and the α = 1 network (the same table) came out 0.526 and 0.447 ms in one run; with
    300, within 4% of each other in two runs."""
    from mobilenets.adapt.lut import backend_call

    x = torch.randn(1, 3, config.resolution, config.resolution)
    with torch_threads(config.threads):
        calls = {
            name: backend_call(
                fold_bn(create_model(config.model, table=table, num_classes=num_classes).eval()),
                x,
                config.backend,
                config.threads,
            )
            for name, table in networks.items()
        }
        return {name: spread(t) for name, t in time_interleaved(calls, 5, runs).items()}


def comparison_rows(
    config: LatencySearch, runs: dict, measured: dict, label: str, name: str
) -> list[dict]:
    """One row per network, the result first (``label``; timed as ``name``): measured latency
    and val top-1 over the training seeds."""
    rows = []
    for network, key in [(label, "result")] + [(f"α={a:g}", a) for a in config.uniform]:
        top1 = [runs[key, s]["val_top1"] for s in range(config.seeds)]
        ms, p10, p90 = measured[name if key == "result" else network]
        rows.append(
            {
                "network": network,
                "measured_ms": ms,
                "ms_p10": p10,
                "ms_p90": p90,
                "top1_mean": statistics.mean(top1),
                "top1_min": min(top1),
                "top1_max": max(top1),
                "seeds": len(top1),
                "params": runs[key, 0]["params"],
                "macs": runs[key, 0]["macs"],
            }
        )
    return rows


def _write_steps(path: Path, history: list[dict]) -> None:
    fields = ["step", "cut", "predicted_ms", "measured_ms", "holdout_top1", "table"]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for h in history:
            writer.writerow({**h, "table": json.dumps(h["table"])})


def write_rows(path: Path, rows: list[dict]) -> None:
    """A CSV of dict rows with the first row's keys (atomically)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_adapt(path: Path, rows: list[dict], history: list[dict], config: AdaptConfig) -> None:
    """Left: val top-1 vs measured latency, adapted vs uniform α. Right: the search's path."""
    fig = new_figure(figsize=(12, 4.8))
    left, right = fig.subplots(1, 2)
    plot_comparison(left, rows, config, "NetAdapt")
    steps = [h["step"] for h in history]
    right.plot(steps, [h["predicted_ms"] for h in history], "s-", label="predicted (LUT)")
    right.plot(steps, [h["measured_ms"] for h in history], "o-", label="measured")
    right.set_xlabel("NetAdapt step")
    right.set_ylabel("latency, ms")
    twin = right.twinx()
    twin.plot(
        steps,
        [h["holdout_top1"] for h in history],
        "^--",
        color="tab:green",
        label="held-out top-1 after short fine-tune",
    )
    twin.set_ylabel("held-out top-1 %")
    right.legend(loc="upper right", fontsize=8)
    twin.legend(loc="lower left", fontsize=8)
    right.set_title("the search: each step's network")
    fig.tight_layout()
    save_figure(fig, path)


def plot_comparison(axes: object, rows: list[dict], config: LatencySearch, label: str) -> None:
    """Val top-1 against measured latency: the result (``rows[0]``, drawn as a star named
    ``label``) beside the uniform-α networks."""
    result, uniform = rows[0], rows[1:]
    for group, style, name in ((uniform, "o-", "uniform α"), ([result], "*", label)):
        xs = [r["measured_ms"] for r in group]
        ys = [r["top1_mean"] for r in group]
        err = [
            [r["top1_mean"] - r["top1_min"] for r in group],
            [r["top1_max"] - r["top1_mean"] for r in group],
        ]
        axes.errorbar(
            xs, ys, yerr=err, fmt=style, ms=12 if name == label else 6, capsize=3, label=name
        )
    for r in uniform:
        axes.annotate(
            r["network"],
            (r["measured_ms"], r["top1_mean"]),
            fontsize=8,
            xytext=(4, -10),
            textcoords="offset points",
        )
    axes.set_xlabel(f"measured latency, ms ({config.backend}, batch 1, {config.threads} thread)")
    axes.set_ylabel(f"val top-1 % (mean, min–max of {config.seeds} seeds)")
    axes.set_title(f"{config.model} on {config.data} at {config.resolution} px")
    axes.legend()


def lut_accuracy(
    config: AdaptConfig, count: int = 20, runs: int = 300, seed: int = 0
) -> list[tuple[float, float]]:
    """(predicted, measured) latency of ``count`` random tables cut from the seed's: how well
    the per-layer table predicts a whole network on this machine."""
    import random

    from mobilenets.adapt.lut import LatencyTable, layer_specs
    from mobilenets.adapt.prune import cut, narrower, units, width

    rng = random.Random(seed)
    family = family_of(config.model)
    base = create_model(config.model, width_mult=config.width_mult).table
    tables = {}
    while len(tables) < count:
        table = base
        for unit in rng.sample(units(base, family), k=rng.randint(1, 8)):
            options = narrower(width(table, family, unit), config.divisor)
            candidate = cut(table, family, unit, rng.choice(options)) if options else None
            table = candidate or table
        tables[f"random {len(tables)}"] = table
    lut = LatencyTable(config.backend, config.threads, config.lut_runs)
    measured = measure(tables, config, 10, runs)
    return [
        (lut.predict(layer_specs(t, family, config.resolution, 10)), measured[name][0])
        for name, t in tables.items()
    ]
