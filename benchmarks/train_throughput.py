"""Training throughput (images/s) on the CPU: ours beside torchvision (and timm), side by side.

One run measures, for each model and resolution, the same training step (forward, backward,
SGD step, batch 32, a fresh batch each step) in three modes, each model and mode in a process of
its own (glibc reads its malloc tunables only at start; a shared process favours later models):

- ``stock``: the plain eager loop a user writes (default glibc malloc, NCHW);
- ``malloc``: the same with the glibc tunables of ``mobilenets train``;
- ``default``: what ``mobilenets train`` does by default: tunables + channels_last.

    python benchmarks/train_throughput.py [--resolutions 32,128,224] [--steps 4] [--out DIR]

Prints a markdown table (medians of the timed steps) and writes it to ``DIR/train_throughput.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = {
    "stock": {"tuned": False, "channels_last": False},
    "malloc": {"tuned": True, "channels_last": False},
    "default": {"tuned": True, "channels_last": True},
}
MODELS = [
    "ours:mobilenet_v1",
    "timm:mobilenetv1_100",
    "ours:mobilenet_v2",
    "torchvision:mobilenet_v2",
]


def build(spec: str):
    source, name = spec.split(":")
    if source == "ours":
        from mobilenets import create_model

        return create_model(name)
    if source == "torchvision":
        import torchvision

        return getattr(torchvision.models, name)()
    import timm

    return timm.create_model(name)


def worker(
    models: list[str], resolutions: list[int], batch: int, steps: int, channels_last: bool
) -> None:
    import torch

    torch.manual_seed(0)
    for spec in models:
        try:
            model = build(spec)
        except ImportError:
            continue
        for res in resolutions:
            model.train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loss_fn = torch.nn.CrossEntropyLoss()
            times = []
            for step in range(steps + 1):  # the first step warms up
                # a fresh batch every step, as a DataLoader gives (allocation pattern included)
                x = torch.randn(batch, 3, res, res)
                y = torch.randint(0, 1000, (batch,))
                start = time.perf_counter()
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                opt.step()
                if step:
                    times.append(time.perf_counter() - start)
            median = statistics.median(times)
            print(
                json.dumps(
                    {
                        "model": spec,
                        "resolution": res,
                        "step_s": median,
                        "images_per_s": batch / median,
                        "spread": max(times) - min(times),
                    }
                ),
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="32,128,224")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    resolutions = [int(r) for r in args.resolutions.split(",")]
    models = args.models.split(",")
    if args.worker:
        worker(
            models, resolutions, args.batch_size, args.steps, MODES[args.worker]["channels_last"]
        )
        return 0

    from mobilenets.malloc import MALLOC_TUNABLES

    results: dict[tuple[str, int, str], dict] = {}
    for spec in models:
        for mode, setting in MODES.items():
            env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
            if setting["tuned"]:
                env["GLIBC_TUNABLES"] = MALLOC_TUNABLES
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                mode,
                "--resolutions",
                args.resolutions,
                "--batch-size",
                str(args.batch_size),
                "--steps",
                str(args.steps),
                "--models",
                spec,
            ]
            print(f"measuring {spec} in mode {mode} ...", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            for line in proc.stdout.splitlines():
                row = json.loads(line)
                results[(row["model"], row["resolution"], mode)] = row

    lines = [
        f"Training throughput, images/s (CPU, {os.cpu_count()} cores, batch {args.batch_size}, "
        f"median of {args.steps} steps after one warm-up; one run)",
        "",
        "| model | px | stock eager | + malloc tunables | mobilenets default "
        "(+ channels_last) | default / stock |",
        "|---|---|---|---|---|---|",
    ]
    for spec in models:
        for res in resolutions:
            cells = [results.get((spec, res, mode)) for mode in MODES]
            if not all(cells):
                continue
            ips = [c["images_per_s"] for c in cells]
            lines.append(
                f"| {spec} | {res} | {ips[0]:.1f} | {ips[1]:.1f} | {ips[2]:.1f} | "
                f"{ips[2] / ips[0]:.2f}× |"
            )
    lines.append("")
    for ours, theirs in (
        ("ours:mobilenet_v2", "torchvision:mobilenet_v2"),
        ("ours:mobilenet_v1", "timm:mobilenetv1_100"),
    ):
        for res in resolutions:
            pairs = [(results.get((ours, res, m)), results.get((theirs, res, m))) for m in MODES]
            if all(a and b for a, b in pairs):
                ratios = ", ".join(
                    f"{m} {a['images_per_s'] / b['images_per_s']:.2f}×"
                    for m, (a, b) in zip(MODES, pairs, strict=True)
                )
                lines.append(f"- {ours} / {theirs} at {res} px: {ratios}")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_throughput.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
