"""A detector's all-int8 ExecuTorch program, post-training against quantization-aware training,
on the real trees.

    python benchmarks/qat_trees.py [--seeds 3] [--qat-epochs 5] [--runs DIR] [--out DIR]

Per seed, from the SSDLite-V2 fine-tuned from the ImageNet V2 on ``trees`` by
``benchmarks/detection_trees.py`` (30 epochs, 320 px; trained here when ``--runs`` lacks it):

1. its fp32 AP50 and its post-training int8 ``.pte`` (PT2E, XNNPACK quantizer: every layer int8,
   the prediction layers too, since the XNNPACK quantizer cannot leave a module in fp32);
2. ``train --qat`` from it for ``--qat-epochs`` (the detector's whole network fake-quantized),
   and its ``.pte`` (the trained scales, nothing calibrated);
3. the control for QAT's extra training: the fp32 run fine-tuned as many epochs more;
4. both programs' networks timed interleaved in one process (batch 1, one thread, medians):
   the same graph, so the same latency is expected.

AP50 by pycocotools on the held-out sites (8 tiles, 97 trees), and box agreement with fp32 (of
fp32's best boxes, as many as each tile has trees, the share int8 finds too). Writes
``qat_trees_<kind>.md`` and ``.json`` to DIR (default benchmarks/results); the CPU it ran on is
in the table's first line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from mobilenets.malloc import MALLOC_TUNABLES, should_reexec

RECIPE = {"data": "trees", "resolution": 320, "batch_size": 16, "progress": False}


def one_seed(seed: int, args: argparse.Namespace, folder: Path) -> dict:
    from detection_trees import one_run

    from mobilenets.export.quantize import quantize_pte
    from mobilenets.training import TrainConfig, fit

    quiet = {"log": lambda _m: None}
    base = Path(args.runs) / f"imagenet_s{seed}"
    one_run(base, "imagenet", seed, 30)
    start = str(base / "checkpoint.pt")
    ptq = quantize_pte(start, folder / "ptq.pte", "trees")  # refused or not: its figures
    qat_run = fit(
        TrainConfig(
            weights=start, qat=True, epochs=args.qat_epochs, seed=seed, out=str(folder / "qat"),
            **RECIPE,
        ),
        **quiet,
    )  # fmt: skip
    qat = quantize_pte(str(folder / "qat" / "checkpoint.pt"), folder / "qat.pte", "trees")
    control = fit(
        TrainConfig(
            weights=start, epochs=args.qat_epochs, seed=seed, out=str(folder / "longer"),
            **RECIPE,
        ),
        **quiet,
    )  # fmt: skip
    ptq_ms, qat_ms = timings(Path(ptq.path), Path(qat.path), RECIPE["resolution"])
    return {
        "seed": seed,
        "fp32": ptq.fp32_top1,
        "ptq_int8": ptq.int8_top1,
        "ptq_agreement": ptq.agreement,
        "ptq_passed": ptq.ok,
        "qat_fake_int8": qat_run.summary["val_ap50"],
        "qat_int8": qat.int8_top1,
        "qat_agreement": qat.agreement,
        "qat_passed": qat.ok,
        "fp32_longer": control.summary["val_ap50"],
        "ptq_ms": ptq_ms,
        "qat_ms": qat_ms,
    }


def timings(ptq: Path, qat: Path, size: int, runs: int = 100) -> tuple[float, float]:
    """Median ms of both programs' networks (decoding and NMS are the same Python for both),
    batch 1, one thread, interleaved; then the threads as before (the next seed trains on
    them: ``benchmarks/qat.py``'s :func:`timings`)."""
    import torch

    from mobilenets.complexity.latency import spread, time_interleaved
    from mobilenets.export.runtimes import torch_threads
    from mobilenets.saved.edge import PteProgram

    with torch_threads(1):
        x = torch.randn(1, 3, size, size)
        programs = {"ptq": PteProgram(ptq, 1), "qat": PteProgram(qat, 1)}
        calls = {name: (lambda p=p: p(x)) for name, p in programs.items()}
        times = time_interleaved(calls, 10, runs)
    return spread(times["ptq"])[0], spread(times["qat"])[0]


def table(rows: list[dict], args: argparse.Namespace) -> str:
    from qat import _cpu  # benchmarks/qat.py: the CPU's name, cores and kind

    lines = [
        "trees (held-out sites, 8 tiles, 97 trees), SSDLite-V2 fine-tuned from the ImageNet V2 "
        f"(30 epochs, 320 px), then QAT {args.qat_epochs} epochs; all-int8 ExecuTorch programs; "
        f"{_cpu()}",
        "",
        "| seed | fp32 AP50 | PTQ int8 AP50 (boxes kept) | QAT int8 AP50 (boxes kept) "
        "| QAT fake int8 | fp32, as many epochs more | PTQ ms | QAT ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['fp32']:.2f}% | {r['ptq_int8']:.2f}% ({r['ptq_agreement']:.1f}%)"
            f" | {r['qat_int8']:.2f}% ({r['qat_agreement']:.1f}%) | {r['qat_fake_int8']:.2f}% | "
            f"{r['fp32_longer']:.2f}% | {r['ptq_ms']:.2f} | {r['qat_ms']:.2f} |"
        )
    keys = ("fp32", "ptq_int8", "qat_int8", "qat_fake_int8", "fp32_longer", "ptq_ms", "qat_ms")
    means = {k: statistics.mean(r[k] for r in rows) for k in keys}
    spreads = {k: max(r[k] for r in rows) - min(r[k] for r in rows) for k in keys}
    cells = [f"{means[k]:.2f}{'' if 'ms' in k else '%'} ({spreads[k]:.2f})" for k in keys]
    lines.append("| mean (spread) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Each int8 program is judged by `quantize`'s guard (AP50 at most 2 points below fp32) "
        "against the run QAT started from; box agreement: of fp32's best boxes, as many per "
        "tile as it has trees, the share int8 finds too (same class, IoU ≥ 0.5). ms: the "
        "program alone (batch 1, 320 px, 1 thread), medians of 100 interleaved calls.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--qat-epochs", type=int, default=5)
    parser.add_argument("--runs", default="runs/trees_benchmark")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as folder:
            rows.append(one_seed(seed, args, Path(folder)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    text = table(rows, args)
    from mobilenets.cpu import this_cpu

    out = Path(args.out)
    (out / f"qat_trees_{this_cpu()}.md").write_text(text + "\n")
    (out / f"qat_trees_{this_cpu()}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    if should_reexec():
        environ = {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES}  # PERF_NOTES.md
        os.execve(sys.executable, [sys.executable, *sys.argv], environ)
    main()
