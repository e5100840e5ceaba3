"""The α × ρ sweep of the V1 paper (Tables 6–7, Figures 4–5) on the user's own data.

Every cell (width multiplier α, resolution) is trained and evaluated with :func:`fit` in its own
folder; a finished cell is skipped when the sweep is run again, and an interrupted one resumes.
The sweep writes ``sweep.csv``, ``sweep.md`` and ``sweep.png`` after every cell.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import msgspec
import torch
from tqdm.auto import tqdm

from mobilenets.catalog import MIN_INPUT_SIZE
from mobilenets.complexity.latency import WIDE_SPREAD, is_wide, spread, time_interleaved
from mobilenets.errors import DamagedFileError, display
from mobilenets.export.runtimes import prepare
from mobilenets.fileio import check_writable_folder, new_figure, save_figure, write_text_atomic
from mobilenets.schema import (
    Count,
    NonNegative,
    Percent,
    Positive,
    PositiveInt,
    Record,
    Text,
    read_state,
)
from mobilenets.training.config import SweepConfig
from mobilenets.training.engine import log_to_stderr, progress_off
from mobilenets.training.loop import fit
from mobilenets.training.state import build_model

SWEEP_FIELDS = [
    "model",
    "width_mult",
    "resolution",
    "rho",
    "params",
    "macs",
    "top1",
    "top5",
    "latency_ms",
    "latency_p10_ms",
    "latency_p90_ms",
    "train_seconds",
    "epochs",
]


def cell_dir(out: Path, width_mult: float, resolution: int) -> Path:
    return out / "cells" / f"a{width_mult:g}_r{resolution}"


class SweepCell(Record):
    """A finished cell's ``cell.json`` (read back through the schema: a damaged one is refused
    naming the field, never averaged into the table)."""

    model: Text
    width_mult: Annotated[float, msgspec.Meta(gt=0, le=4)]
    resolution: Annotated[int, msgspec.Meta(ge=MIN_INPUT_SIZE, le=4096)]
    rho: Annotated[float, msgspec.Meta(gt=0, le=1)]
    params: Count
    macs: Count
    top1: Percent
    top5: Percent
    latency_ms: Positive | None
    latency_p10_ms: Positive | None
    latency_p90_ms: Positive | None
    train_seconds: NonNegative
    epochs: PositiveInt
    classes: Annotated[list[Text], msgspec.Meta(min_length=2, max_length=100_000)]


def read_cell(path: Path, model: str, width_mult: float, resolution: int) -> dict:
    """A finished cell's row, checked against its schema and against the cell it sits in."""
    cell = read_state(path, SweepCell, "sweep cell")
    claimed = (cell.model, cell.width_mult, cell.resolution)
    if claimed != (model, width_mult, resolution):
        raise DamagedFileError(
            f"{display(path)} holds the cell {claimed[0]} α={claimed[1]:g} {claimed[2]} px, not "
            f"{model} α={width_mult:g} {resolution} px; delete it to train this cell again"
        )
    return msgspec.structs.asdict(cell)


@torch.inference_mode()
def measure_latencies(
    models: dict[tuple[float, int], torch.nn.Module], runs: int = 30, channels_last: bool = True
) -> dict[tuple[float, int], tuple[float, float, float]]:
    """Median, 10th and 90th percentile (ms) of batch-1 eager forwards of each ``(α,
    resolution): model``, timed interleaved across the models
    (:func:`~mobilenets.complexity.latency.time_interleaved`: a warm-up round, then ``runs``
    rounds in rotating order) so that load on the machine falls on all alike."""
    backend = "channels_last" if channels_last else "eager"
    calls = {
        key: prepare(model, backend, torch.randn(1, 3, key[1], key[1]))
        for key, model in models.items()
    }
    return {key: spread(t) for key, t in time_interleaved(calls, 1, runs).items()}


def latency_phase(config: SweepConfig, rows: list[dict], log: Callable[[str], None]) -> None:
    """After every cell of the shard is trained: time the cells that have no latency yet, in
    one quiet phase (nothing else of ours runs), and store it in their ``cell.json``."""
    todo = [r for r in rows if r.get("latency_ms") is None]
    if not todo:
        return
    log(f"timing {len(todo)} cells: {config.latency_runs} interleaved batch-1 forwards each")
    models = {
        (r["width_mult"], r["resolution"]): build_model(
            dataclasses.replace(config.train, width_mult=r["width_mult"]), len(r["classes"])
        )
        for r in todo
    }
    timed = measure_latencies(models, config.latency_runs, config.train.channels_last)
    for r in todo:
        r["latency_ms"], r["latency_p10_ms"], r["latency_p90_ms"] = timed[
            r["width_mult"], r["resolution"]
        ]
        path = cell_dir(Path(config.out), r["width_mult"], r["resolution"]) / "cell.json"
        write_text_atomic(path, json.dumps(r, indent=2))


def wide(row: dict) -> bool:
    """Whether a cell's latency spread (p10–p90) is wider than ``WIDE_SPREAD`` of its median."""
    return is_wide(row["latency_ms"], row["latency_p10_ms"], row["latency_p90_ms"])


def sweep(config: SweepConfig, log: Callable[[str], None] = log_to_stderr) -> list[dict]:
    """Train and evaluate every α × resolution cell of this shard.

    Finished cells (``cells/a{α}_r{res}/cell.json``) are skipped, an interrupted cell resumes
    from its checkpoint. After each cell the table and plot are rebuilt from every finished
    cell in the folder, so shards run on several machines into one shared folder assemble
    themselves. Returns the rows of all finished cells, in grid order.
    """
    out = check_writable_folder(config.out, data=[config.train.data])
    grid = [(a, r) for a in config.width_mults for r in config.resolutions]
    index, count = config.shard
    mine = grid[index::count]
    bar = tqdm(mine, desc="sweep", unit="cell", disable=progress_off(config.train.progress))
    for width_mult, resolution in bar:
        bar.set_postfix(alpha=width_mult, resolution=resolution)
        result_path = cell_dir(out, width_mult, resolution) / "cell.json"
        if result_path.exists():
            row = read_cell(result_path, config.train.model, width_mult, resolution)
            log(f"cell α={width_mult:g} {resolution} px: done before (top-1 {row['top1']:.2f}%)")
        else:
            row = _run_cell(config, width_mult, resolution, log)
            write_text_atomic(result_path, json.dumps(row, indent=2))
        write_sweep(out, finished_rows(out, grid, config.train.model), config.train.data)
    latency_phase(config, finished_rows(out, mine, config.train.model), log)
    rows = finished_rows(out, grid, config.train.model)
    write_sweep(out, rows, config.train.data)
    return rows


def finished_rows(out: Path, grid: list[tuple[float, int]], model: str) -> list[dict]:
    """The rows of the grid's finished cells, in grid order."""
    return [
        read_cell(cell_dir(out, a, r) / "cell.json", model, a, r)
        for a, r in grid
        if (cell_dir(out, a, r) / "cell.json").exists()
    ]


def _run_cell(
    config: SweepConfig, width_mult: float, resolution: int, log: Callable[[str], None]
) -> dict:
    folder = cell_dir(Path(config.out), width_mult, resolution)
    train = dataclasses.replace(
        config.train,
        width_mult=width_mult,
        resolution=resolution,
        out=str(folder),
        resume=(folder / "checkpoint.pt").exists(),
    )
    result = fit(train, log=log)
    summary = result.summary
    return {
        "model": train.model,
        "width_mult": width_mult,
        "resolution": resolution,
        "rho": resolution / max(config.resolutions),
        "params": summary["params"],
        "macs": summary["macs"],
        "top1": result.top1,
        "top5": summary["val_top5"],
        "latency_ms": None,  # measured after training, in the latency phase
        "latency_p10_ms": None,
        "latency_p90_ms": None,
        "train_seconds": summary["train_seconds"],
        "epochs": summary["epochs"],
        "classes": summary["classes"],
    }


def write_sweep(out: Path, rows: list[dict], data: str) -> None:
    """``sweep.csv``, ``sweep.md`` and ``sweep.png`` for the rows so far."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SWEEP_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "sweep.csv", buffer.getvalue())
    write_text_atomic(out / "sweep.md", format_sweep(rows, data))
    plot_sweep(out / "sweep.png", rows, data)


def format_sweep(rows: list[dict], data: str) -> str:
    """A markdown table: α, ρ, resolution, params, mult-adds, top-1, top-5, latency, train time."""
    lines = [
        "| model | α | ρ | resolution | params | mult-adds (M) | top-1 (%) | top-5 (%) | "
        "latency (ms, batch 1: median, p10–p90) | train (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['width_mult']:g} | {r['rho']:.3f} | {r['resolution']} | "
            f"{r['params']:,} | {r['macs'] / 1e6:.2f} | {r['top1']:.2f} | {r['top5']:.2f} | "
            f"{_latency(r)} | {r['train_seconds']:.1f} |"
        )
    lines.append("")
    flagged = sum(1 for r in rows if r.get("latency_ms") is not None and wide(r))
    lines.append(
        f"Held-out split of `{data}`; latency: batch-1 eager forwards on this machine "
        f"({torch.get_num_threads()} threads), measured after training with every cell's calls "
        "interleaved; median and 10th–90th percentile"
        + (
            f". {flagged} cell(s) marked ⚠ have a p10–p90 spread over "
            f"{WIDE_SPREAD:.0%} of the median: the machine was busy, re-time before comparing."
            if flagged
            else "."
        )
    )
    return "\n".join(lines) + "\n"


def _latency(row: dict) -> str:
    if row.get("latency_ms") is None:
        return "not yet timed"
    mark = " ⚠" if wide(row) else ""
    return (
        f"{row['latency_ms']:.2f} ({row['latency_p10_ms']:.2f}–{row['latency_p90_ms']:.2f}){mark}"
    )


def _decades(values: list[float]) -> list[float]:
    """1-2-5 ticks spanning ``values`` (for a log axis with readable labels)."""
    import math

    low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    ticks = [m * 10**e for e in range(low, high + 1) for m in (1, 2, 5)]
    return [t for t in ticks if min(values) / 1.5 <= t <= max(values) * 1.5]


def plot_sweep(path: Path, rows: list[dict], data: str) -> None:
    """V1 Figure 4 (top-1 against mult-adds, log axis, a line per α, a marker per resolution)
    and Figure 5 (top-1 against parameters)."""
    from matplotlib import colormaps

    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    resolutions = sorted({r["resolution"] for r in rows}, reverse=True)
    alphas = sorted({r["width_mult"] for r in rows}, reverse=True)
    colors = colormaps["viridis"]([i / max(1, len(alphas) - 1) * 0.85 for i in range(len(alphas))])
    fig = new_figure(figsize=(12, 4.8))
    ax_macs, ax_params = fig.subplots(1, 2)
    for color, alpha in zip(colors, alphas, strict=True):
        cell = sorted((r for r in rows if r["width_mult"] == alpha), key=lambda r: r["macs"])
        ax_macs.plot(
            [r["macs"] / 1e6 for r in cell],
            [r["top1"] for r in cell],
            "-",
            color=color,
            label=f"α = {alpha:g}",
        )
        for r in cell:
            marker = markers[resolutions.index(r["resolution"]) % len(markers)]
            ax_macs.plot(r["macs"] / 1e6, r["top1"], marker, color=color, markersize=8)
            ax_params.plot(r["params"] / 1e6, r["top1"], marker, color=color, markersize=8)
    for res_index, res in enumerate(resolutions):
        ax_macs.plot([], [], markers[res_index % len(markers)], color="gray", label=f"{res} px")
    ax_macs.set(
        xscale="log",
        xlabel="mult-adds (millions, log scale)",
        ylabel="top-1 (%)",
        title="accuracy vs mult-adds (V1 paper, Figure 4)",
    )
    ax_params.set(
        xscale="log",
        xlabel="parameters (millions, log scale)",
        ylabel="top-1 (%)",
        title="accuracy vs parameters (V1 paper, Figure 5)",
    )
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    for ax, key in ((ax_macs, "macs"), (ax_params, "params")):
        values = sorted({r[key] / 1e6 for r in rows})
        ax.xaxis.set_major_locator(FixedLocator(values if key == "params" else _decades(values)))
        ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:.3g}")
        ax.xaxis.set_minor_locator(
            NullLocator() if key == "params" else ax.xaxis.get_minor_locator()
        )
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
    ax_macs.legend(fontsize=8, ncol=2)
    model = rows[0]["model"] if rows else ""
    fig.suptitle(f"{model} on {data}: width multiplier α × resolution")
    fig.tight_layout()
    save_figure(fig, path)
