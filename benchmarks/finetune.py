"""Fine-tuning from real ImageNet weights against training from scratch, and distillation.

    python benchmarks/finetune.py [--epochs 10] [--student-epochs 30] [--seeds 3] [--out DIR]

On the ``photos`` task (13 scikit-image photographs, train and val patches from disjoint parts of
each photo), with torchvision's MobileNetV2 IMAGENET1K_V1 weights found by name:

1. the learning-rate grid of the fine-tuning recipe (SGD, same epochs; the default recipe is
   lr 0.002), beside V2 from scratch with the from-scratch recipe; the default fine-tuning
   recipe's variants (head-only epochs, frozen BN statistics);
2. a MobileNetV1 α=0.25 student trained alone and distilled from the best fine-tuned V2 of
   table 1 (the teacher), each over ``--seeds`` seeds (mean and spread), for
   ``--student-epochs`` epochs (a student from scratch needs more than 10 epochs of 8 steps to
   leave chance).

Writes ``finetune.md``, ``finetune.json`` and ``finetune.png`` (validation top-1 per epoch) to DIR
(default benchmarks/results) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from mobilenets.fileio import new_figure, save_figure
from mobilenets.malloc import MALLOC_TUNABLES, should_reexec
from mobilenets.training import TrainConfig, fit

WEIGHTS = "torchvision:mobilenet_v2.IMAGENET1K_V1"


def run(name: str, config: TrainConfig) -> dict:
    result = fit(config, log=lambda _m: None)
    curve = [h["val_top1"] for h in json_history(Path(config.out))]
    row = {"name": name, "top1": result.top1, "best": max(curve), "curve": curve}
    row["out"] = config.out
    row.update(lr=result.summary["recipe"]["lr"], seconds=result.summary["train_seconds"])
    print(f"{name}: top-1 {row['top1']:.2f}% (best {row['best']:.2f}%)", file=sys.stderr)
    return row


def json_history(out: Path) -> list[dict]:
    import csv

    with open(out / "metrics.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--student-epochs", type=int, default=30)
    parser.add_argument("--lrs", default="0.05,0.02,0.005,0.0005")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if should_reexec():  # the 2-3x faster CPU training of PERF_NOTES.md
        os.execve(
            sys.executable,
            [sys.executable, *sys.argv],
            {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES},
        )
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="finetune-"))
    base = {
        "data": "photos",
        "resolution": args.resolution,
        "epochs": args.epochs,
        "progress": False,
    }

    def config(name: str, **kw: object) -> TrainConfig:
        return TrainConfig(**{**base, **kw}, out=str(work / name))

    recipe = [run("V2 from scratch (lr 0.05)", config("scratch", model="mobilenet_v2"))]
    for lr in [float(x) for x in args.lrs.split(",")]:
        recipe.append(run(f"V2 fine-tuned, lr {lr:g}", config(f"ft{lr}", weights=WEIGHTS, lr=lr)))
    recipe.append(run("V2 fine-tuned, default recipe (lr 0.002)", config("ft", weights=WEIGHTS)))
    recipe.append(run("  + 2 head-only epochs", config("head2", weights=WEIGHTS, freeze_epochs=2)))
    recipe.append(run("  + frozen BN statistics", config("fbn", weights=WEIGHTS, freeze_bn=True)))
    best = max((r for r in recipe if "scratch" not in r["name"]), key=lambda r: r["top1"])
    best["teacher"] = True
    teacher_file = best["out"] + "/checkpoint.pt"

    students = {"alone": [], "distilled": []}
    student = {"model": "mobilenet_v1", "width_mult": 0.25, "epochs": args.student_epochs}
    for seed in range(args.seeds):
        students["alone"].append(
            run(f"V1 0.25 alone, seed {seed}", config(f"a{seed}", **student, seed=seed))
        )
        students["distilled"].append(
            run(
                f"V1 0.25 distilled, seed {seed}",
                config(f"d{seed}", **student, seed=seed, teacher=teacher_file),
            )
        )
    tables = _tables(recipe, students, args)
    print(tables)
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune.md").write_text(tables)
    (out / "finetune.json").write_text(
        json.dumps({"recipe": recipe, "students": students}, indent=2)
    )
    _plot(out / "finetune.png", recipe, students, args)
    print(f"wrote {out}/finetune.md, finetune.json, finetune.png", file=sys.stderr)
    return 0


def _tables(recipe: list[dict], students: dict, args: argparse.Namespace) -> str:
    lines = [
        f"photos task, {args.resolution} px, {args.epochs} epochs, SGD + cosine, seed 0\n",
        "| run | lr | val top-1 (last) | best epoch | lowest epoch after 1 |",
        "|---|---|---|---|---|",
    ]
    for r in recipe:
        low = min(r["curve"][1:]) if len(r["curve"]) > 1 else r["curve"][0]
        lines.append(
            f"| {r['name']}{' †' if r.get('teacher') else ''} | {r['lr']:g} | {r['top1']:.2f}% "
            f"| {r['best']:.2f}% | {low:.2f}% |"
        )
    lines += [
        "",
        f"V1 α=0.25 student, {args.student_epochs} epochs, {args.seeds} seeds (teacher: the "
        "best fine-tuned V2 above, marked †; T=4, W=0.5)\n",
        "| student | val top-1 per seed | mean | spread (max − min) |",
        "|---|---|---|---|",
    ]
    for name, runs in students.items():
        tops = [r["top1"] for r in runs]
        lines.append(
            f"| {name} | {', '.join(f'{t:.2f}' for t in tops)} | {statistics.mean(tops):.2f}% | "
            f"{max(tops) - min(tops):.2f} |"
        )
    return "\n".join(lines) + "\n"


def _plot(path: Path, recipe: list[dict], students: dict, args: argparse.Namespace) -> None:
    fig = new_figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2)
    for r in recipe:
        left.plot(
            range(1, len(r["curve"]) + 1),
            r["curve"],
            "o-" if "scratch" in r["name"] else ".-",
            label=r["name"].strip(),
        )
    left.set(xlabel="epoch", ylabel="val top-1 (%)", title="V2 on photos: fine-tuned vs scratch")
    for name, style in (("alone", "C0"), ("distilled", "C3")):
        for i, r in enumerate(students[name]):
            right.plot(
                range(1, len(r["curve"]) + 1),
                r["curve"],
                color=style,
                alpha=0.7,
                label=name if i == 0 else None,
            )
    right.set(xlabel="epoch", ylabel="val top-1 (%)", title="V1 α=0.25: alone vs distilled")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
