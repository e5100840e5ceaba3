"""``bench``'s report: the markdown table, the CSV and JSON, and the grouped-bar picture."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict
from pathlib import Path

from mobilenets.complexity.latency import WIDE_SPREAD, is_wide
from mobilenets.export.bench import BenchRow, BenchRun
from mobilenets.fileio import new_figure, save_figure, write_text_atomic


def format_bench(run: BenchRun) -> str:
    """A markdown table of the rows, the roofs, the machine's other load, the fastest paths."""
    rows = run.rows
    first = rows[0] if rows else None
    lines = [
        f"Latency, batch {first.batch if first else '?'}, {first.resolution if first else '?'} "
        f"px, {run.threads} threads ({os.cpu_count()} cores); {run.peaks.describe()}",
        "",
    ]
    if run.other_cores is not None:
        load = f"other processes used {run.other_cores:.2f} cores while timing"
        lines += [
            f"⚠ {load}: the figures are not to be trusted; re-run on a quiet machine"
            if run.busy
            else f"{load} (quiet)",
            "",
        ]
    lines += [
        "| model | source | backend | median ms | p10–p90 ms | img/s | × vs reference eager | "
        "× roofline bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    wide = 0
    for r in rows:
        speed = f"{r.speedup_vs_reference_eager:.2f}" if r.speedup_vs_reference_eager else "–"
        flag = " ⚠" if is_wide(r.median_ms, r.p10_ms, r.p90_ms) else ""
        wide += bool(flag)
        lines.append(
            f"| {r.model} | {r.source} | {r.backend} | {r.median_ms:.2f} | {r.p10_ms:.2f}–"
            f"{r.p90_ms:.2f}{flag} | {r.images_per_s:.1f} | {speed} | {r.vs_roofline:.2f} |"
        )
    if wide:
        lines += [
            "",
            f"⚠ {wide} of {len(rows)} rows spread wider than {WIDE_SPREAD:.0%} of their median "
            "(p10–p90): their medians are not to be trusted; re-run on a quiet machine.",
        ]
    lines += ["", "Fastest path per model (ours):", ""]
    lines += [f"- {m}: {r.backend} {r.median_ms:.2f} ms" for m, r in run.fastest().items()]
    lines += [f"- skipped {line}" for line in run.skipped]
    lines.append("")
    how = (
        "Each configuration timed alone in a fresh process (2 rounds, rotating order): above "
        "one thread, runtimes in one process slow each other with their spinning thread pools."
        if run.isolated
        else "Timed interleaved in one process (every configuration once per round, rotating "
        "order)."
    )
    lines.append(
        f"{how} roofline bound "
        "= 2·MACs·batch / roof (the best fp32 matmul of any backend; int8 rows: the faster of "
        "that and the int8 matmul); × roofline = median / bound (1.0 is the bound); × vs "
        "reference eager = the reference library's eager median / ours."
    )
    return "\n".join(lines) + "\n"


def write_bench(out: str | Path, run: BenchRun) -> Path:
    """``bench.md``, ``bench.csv``, ``bench.json`` and ``bench.png`` (grouped bars) in ``out``."""
    rows = run.rows
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "bench.md", format_bench(run))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(rows[0])))
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    write_text_atomic(out / "bench.csv", buffer.getvalue())
    payload = {
        "peaks": asdict(run.peaks),
        "threads": run.threads,
        "other_cores": run.other_cores,
        "skipped": run.skipped,
        "isolated": run.isolated,
        "rows": [asdict(r) for r in rows],
    }
    write_text_atomic(out / "bench.json", json.dumps(payload, indent=2))
    plot_bench(out / "bench.png", rows)
    return out


def plot_bench(path: Path, rows: list[BenchRow]) -> None:
    """Grouped bars: per model, one bar per backend, ours plain and the reference hatched."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    models = list(dict.fromkeys(r.model for r in rows))
    series = list(dict.fromkeys((r.source, r.backend) for r in rows))
    backends = list(dict.fromkeys(r.backend for r in rows))
    by_key = {(r.model, r.source, r.backend): r for r in rows}
    width = 0.8 / len(series)
    colors = colormaps["tab10"]
    fig = new_figure(figsize=(max(8, 2.6 * len(models)), 5))
    ax = fig.subplots()
    for s, (source, backend) in enumerate(series):
        xs, heights = [], []
        for m, model in enumerate(models):
            row = by_key.get((model, source, backend))
            if row is not None:
                xs.append(m + (s - (len(series) - 1) / 2) * width)
                heights.append(row.median_ms)
        hatch = "" if source == "mobilenets" else "//"
        ax.bar(
            xs,
            heights,
            width,
            color=colors(backends.index(backend)),
            hatch=hatch,
            edgecolor="black",
            linewidth=0.4,
        )
    for m, model in enumerate(models):
        bound = next(r.roofline_ms for r in rows if r.model == model)
        ax.hlines(bound, m - 0.45, m + 0.45, colors="red", linestyles="--")
    handles = [
        Patch(facecolor=colors(i), edgecolor="black", label=b) for i, b in enumerate(backends)
    ]
    handles += [
        Patch(facecolor="white", edgecolor="black", label="mobilenets"),
        Patch(facecolor="white", edgecolor="black", hatch="//", label="torchvision (timm: V1)"),
        Line2D([], [], color="red", linestyle="--", label="fp32 roofline bound"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("median latency (ms, lower is better)")
    first = rows[0]
    ax.set_title(
        f"batch {first.batch}, {first.resolution} px: ours (plain) beside the "
        "reference library (hatched)"
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
