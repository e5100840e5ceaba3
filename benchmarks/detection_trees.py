"""SSDLite-V2 on the trees: fine-tuned from the real ImageNet V2 backbone against from scratch,
equal epochs, three seeds.

    python benchmarks/detection_trees.py [--epochs 30] [--seeds 3] [--runs DIR] [--out DIR]

Both arms share one recipe (SGD, lr 0.01, weight decay 4e-5 as torchvision's SSDLite reference,
1 warmup epoch, cosine, batch 16, 320-px input; 192 random 200-px crops per epoch) and differ
only in the backbone's start: torchvision's MobileNetV2 IMAGENET1K_V1 (found by name) or the
random init. A run whose ``summary.json`` is in ``--runs`` already is read, not trained again.
Writes ``trees.md``, ``trees.json`` and ``trees.png`` (AP50 per epoch) to ``--out`` (default
benchmarks/results) and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
from pathlib import Path

from mobilenets.fileio import new_figure, save_figure
from mobilenets.malloc import MALLOC_TUNABLES, should_reexec
from mobilenets.training import TrainConfig, fit

WEIGHTS = "torchvision:mobilenet_v2.IMAGENET1K_V1"
RECIPE = {
    "model": "ssdlite_mobilenet_v2",
    "data": "trees",
    "resolution": 320,
    "batch_size": 16,
    "lr": 0.01,
    "weight_decay": 4e-5,
    "warmup_epochs": 1,
    "progress": False,
}


def one_run(folder: Path, init: str, seed: int, epochs: int) -> dict:
    """The run's last-epoch figures and its AP50 curve (trained unless already there)."""
    if not (folder / "summary.json").is_file():
        weights = WEIGHTS if init == "imagenet" else None
        config = TrainConfig(**RECIPE, epochs=epochs, seed=seed, weights=weights, out=str(folder))
        fit(config, log=lambda _m: None)
    summary = json.loads((folder / "summary.json").read_text())
    with (folder / "metrics.csv").open() as handle:
        curve = [float(row["val_ap50"]) for row in csv.DictReader(handle)]
    keys = ("val_map", "val_ap50", "val_ap75", "train_seconds")
    return {"init": init, "seed": seed, **{k: summary[k] for k in keys}, "curve": curve}


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", default="runs/trees_benchmark")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    rows = [
        one_run(Path(args.runs) / f"{init}_s{seed}", init, seed, args.epochs)
        for seed in range(args.seeds)
        for init in ("imagenet", "scratch")
    ]
    lines = [
        f"SSDLite-V2 on trees (held-out sites OSBS_029 and SOAP_061, 8 tiles, 97 trees), "
        f"{args.epochs} epochs, seeds 0–{args.seeds - 1}, COCO AP (%) by pycocotools",
        "",
        "| backbone start | AP50 | mAP (0.50:0.95) | AP75 | per seed AP50 | s per run (a) |",
        "|---|---|---|---|---|---|",
    ]
    for init in ("imagenet", "scratch"):
        arm = [r for r in rows if r["init"] == init]
        seeds = ", ".join(f"{r['val_ap50']:.2f}" for r in arm)
        seconds = statistics.mean(r["train_seconds"] for r in arm)
        lines.append(
            f"| {'ImageNet V2' if init == 'imagenet' else 'scratch'} | "
            f"{spread([r['val_ap50'] for r in arm])} | {spread([r['val_map'] for r in arm])} | "
            f"{spread([r['val_ap75'] for r in arm])} | {seeds} | {seconds:.0f} |"
        )
    lines += [
        "",
        "(a) training seconds, mean of the seeds; on a shared machine they measure its load too.",
    ]
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    (out / "trees.md").write_text(table + "\n")
    (out / "trees.json").write_text(json.dumps(rows, indent=2) + "\n")
    fig = new_figure(figsize=(7, 4))
    ax = fig.subplots()
    for row in rows:
        color = "tab:blue" if row["init"] == "imagenet" else "tab:red"
        style = ("-", "--", ":")[row["seed"] % 3]
        label = f"{'ImageNet V2' if row['init'] == 'imagenet' else 'scratch'}, seed {row['seed']}"
        ax.plot(range(1, len(row["curve"]) + 1), row["curve"], style, color=color, label=label)
    ax.set(xlabel="epoch", ylabel="AP50 (%)", title="SSDLite-V2 on trees, held-out sites")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "trees.png")


if __name__ == "__main__":
    if should_reexec():
        env = {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES}  # PERF_NOTES.md: 2-3x faster
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    main()
