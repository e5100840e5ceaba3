"""Threads and spinning, every backend, each setting alone in a fresh process.

    python benchmarks/threads.py [--models ...] [--batches 1,32] [--rounds 2] [--runs 20]
                                 [--out benchmarks/results/threads]

Why fresh processes: on a machine with few cores, a thread pool left spinning by one runtime
(ONNX Runtime's workers, libgomp's, OpenVINO's TBB arena) steals the core another runtime's
second thread needs, so timing several multi-threaded runtimes in one process measures their
interference, not the setting. A user's ``predict`` holds one runtime; so does each run here.

Every (model, backend, threads, ONNX Runtime spinning) runs in its own process: the files are
exported once beforehand (int8 calibrated on random inputs: timing only), the child loads one,
warms it up and times ``--runs`` calls. A run with some ``--batches`` keeps the other batch sizes
of the results already in OUT. The list of settings is run ``--rounds`` times, each round
in a rotated order, so slow drift on the machine falls on every setting alike; the figure is the
median of every timed call over the rounds, with the spread of the per-round medians.

Writes ``OUT/threads.md``, ``.csv``, ``.json`` and ``threads.png``, and prints the table: for each
model, batch and backend the 1-thread and 2-thread medians (ONNX Runtime with its workers
spinning, its default, and not) and the fastest setting.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mobilenets.export.choices import DEFAULT_BACKENDS, DEFAULT_MODELS

MODELS = DEFAULT_MODELS
#: bench's backends less channels_last (an eager variant: eager stands for both here)
BACKENDS = tuple(b for b in DEFAULT_BACKENDS if b != "channels_last")


def settings(models: list[str], batches: list[int], threads: list[int]) -> list[dict]:
    """Every setting to time: ONNX Runtime's with spinning on and off when threads > 1."""
    out = []
    for batch in batches:
        for model in models:
            for backend in BACKENDS:
                if backend.startswith("executorch") and batch != 1:
                    continue  # our .pte programs are batch 1
                for n in threads:
                    spins = (True, False) if backend.startswith("ort") and n > 1 else (None,)
                    for spin in spins:
                        out.append(
                            {"model": model, "backend": backend, "batch": batch, "threads": n}
                            | ({"spinning": spin} if spin is not None else {})
                        )
    return out


def export_all(models: list[str], workdir: Path) -> None:
    """Every file the backends run (fp32 and int8 QDQ ONNX, fp32/int8 .pte, fp32/int8 OpenVINO
    IR of each model), written once by the runtime layer before the timing processes start."""
    import torch

    from mobilenets import create_model
    from mobilenets.export.runtimes import prepare

    for name in models:
        model = create_model(name).eval()
        for backend in BACKENDS:
            if backend != "eager":
                prepare(model, backend, torch.randn(1, 3, 224, 224), workdir=workdir, tag=name)


def child(setting: dict, workdir: Path, runs: int, warmup: int) -> list[float]:
    """Load one runtime at its setting, warm it up, time ``runs`` calls (ms)."""
    import numpy as np
    import torch

    from mobilenets import create_model
    from mobilenets.complexity.latency import time_calls
    from mobilenets.export.runtimes import prepare, torch_threads

    name, backend, n = setting["model"], setting["backend"], setting["threads"]
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((setting["batch"], 3, 224, 224), np.float32))
    spinning = setting.get("spinning", True)
    with torch_threads(n):
        network = create_model(name)
        call = prepare(network, backend, x, workdir=workdir, tag=name, threads=n, spinning=spinning)
        return time_calls(call, warmup, runs)


def label(setting: dict) -> str:
    spin = setting.get("spinning")
    return f"{setting['threads']}t" + ("" if spin is None else (" spin" if spin else " no-spin"))


def summarize(results: list[dict]) -> tuple[list[dict], list[str]]:
    """Rows (one per model, batch, backend) and the markdown table."""
    rows = []
    keys = dict.fromkeys((r["model"], r["batch"], r["backend"]) for r in results)
    for model, batch, backend in keys:
        mine = [
            r for r in results if (r["model"], r["batch"], r["backend"]) == (model, batch, backend)
        ]
        cells = {label(r): r for r in mine}
        best = min(mine, key=lambda r: r["median_ms"])
        one = cells.get("1t")
        row = {"model": model, "batch": batch, "backend": backend, "fastest": label(best)}
        for key, r in cells.items():
            row[key] = r["median_ms"]
            row[f"{key} spread"] = r["round_spread"]
        row["best/1t"] = best["median_ms"] / one["median_ms"] if one else None
        rows.append(row)
    columns = ["1t", "2t", "2t spin", "2t no-spin"]
    lines = [
        "| model | batch | backend | "
        + " | ".join(f"{c} ms" for c in columns)
        + " | fastest | fastest / 1t |",
        "|---|---|---|" + "---|" * len(columns) + "---|---|",
    ]
    for row in rows:
        cells = [
            f"{row[c]:.2f} ({row[c + ' spread'][0]:.2f}–{row[c + ' spread'][1]:.2f})"
            if c in row
            else ""
            for c in columns
        ]
        lines.append(
            f"| {row['model']} | {row['batch']} | {row['backend']} | "
            + " | ".join(cells)
            + f" | {row['fastest']} | {row['best/1t']:.2f} |"
        )
    return rows, lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(len(batches), 1, figsize=(12, 4.5 * len(batches)), squeeze=False)
    for ax, batch in zip(axes[:, 0], batches, strict=True):
        mine = [r for r in rows if r["batch"] == batch]
        labels = [f"{r['model'].replace('mobilenet_', '')}\n{r['backend']}" for r in mine]
        best2 = [min(r.get(k, float("inf")) for k in ("2t", "2t spin")) for r in mine]
        ratio = [b / r["1t"] for b, r in zip(best2, mine, strict=True)]
        spin_off = [r.get("2t no-spin", float("nan")) / r["1t"] for r in mine]
        xs = range(len(mine))
        ax.bar([x - 0.2 for x in xs], ratio, 0.4, label="2 threads (ORT spinning)")
        ax.bar([x + 0.2 for x in xs], spin_off, 0.4, label="2 threads, ORT not spinning")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks(list(xs), labels, rotation=90, fontsize=7)
        ax.set_ylabel("latency / 1-thread latency")
        ax.set_title(f"batch {batch}: below 1 means 2 threads are faster")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20, help="timed calls per process (batch 1)")
    parser.add_argument("--out", default="benchmarks/results/threads")
    parser.add_argument(
        "--summarize-only", action="store_true", help="rewrite the table and plot from OUT's json"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        setting = json.loads(args.child)
        runs = args.runs if setting["batch"] == 1 else max(3, args.runs // 4)
        print(json.dumps(child(setting, Path(args.workdir), runs, warmup=max(2, runs // 4))))
        return 0
    out = Path(args.out)
    if args.summarize_only:
        return write(json.loads((out / "threads.json").read_text())["results"], out, args.rounds)
    models = args.models.split(",")
    todo = settings(models, [int(b) for b in args.batches.split(",")],
                    [int(t) for t in args.threads.split(",")])  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    times: dict[int, list[list[float]]] = {i: [] for i in range(len(todo))}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        export_all(models, workdir)
        for round_ in range(args.rounds):
            shift = round_ * len(todo) // max(1, args.rounds)
            order = list(range(len(todo)))[shift:] + list(range(len(todo)))[:shift]
            for step, i in enumerate(order):
                print(f"round {round_ + 1}/{args.rounds} {step + 1}/{len(todo)}: {todo[i]}",
                      file=sys.stderr, flush=True)  # fmt: skip
                done = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(todo[i]),
                     "--workdir", str(workdir), "--runs", str(args.runs)],
                    capture_output=True, text=True, check=True, env=os.environ,
                )  # fmt: skip
                times[i].append(json.loads(done.stdout.strip().splitlines()[-1]))
    results = []
    for i, setting in enumerate(todo):
        per_round = [statistics.median(t) for t in times[i]]
        every = [v for t in times[i] for v in t]
        results.append(
            setting
            | {
                "median_ms": statistics.median(every),
                "round_spread": [min(per_round), max(per_round)],
                "calls": len(every),
            }
        )
    previous = out / "threads.json"
    if previous.exists():  # keep the earlier run's other batch sizes (e.g. --batches 32 alone)
        ran = {r["batch"] for r in results}
        kept = [r for r in json.loads(previous.read_text())["results"] if r["batch"] not in ran]
        results = sorted(kept + results, key=lambda r: r["batch"])
    (out / "threads.json").write_text(json.dumps({"results": results}, indent=1))
    return write(results, out, args.rounds)


def write(results: list[dict], out: Path, rounds: int) -> int:
    """threads.md, .json, .csv and .png from the timed settings; the table printed."""
    rows, lines = summarize(results)
    header = [
        f"# Threads and spinning: each setting alone in a fresh process, {rounds} rounds "
        f"(`python benchmarks/threads.py`), {os.cpu_count()} cores",
        "",
        "Medians of every timed call (ms), with the range of the per-round medians. ORT = ONNX "
        "Runtime; 'spin' = its workers spin between calls (its default). Plot: `threads.png`.",
        "",
    ]
    (out / "threads.md").write_text("\n".join(header + lines) + "\n")
    (out / "threads.json").write_text(json.dumps({"results": results, "rows": rows}, indent=1))
    with (out / "threads.csv").open("w", newline="") as f:
        fields = list(dict.fromkeys(k for r in results for k in r))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(results)
    plot(rows, out / "threads.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
