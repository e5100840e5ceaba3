"""NetAdapt against uniform α, and how well the latency table predicts, on this machine.

    python benchmarks/netadapt.py [--model mobilenet_v3_small] [--data digits] [--resolution 64]
                                  [--match 0.5] [--seeds 3] [--out benchmarks/results/netadapt]

1. The latency table's accuracy: 20 random tables cut from the seed's, each predicted (sum of
   its layers, measured alone) and measured whole, interleaved (``lut_accuracy``).
2. The target: the table's prediction for the uniform α = ``--match`` network, so that the
   adapted network and that one meet at equal latency.
3. ``mobilenets adapt`` with that target (``adapt()``), the adapted table and every uniform α
   trained from scratch with the same budget for ``--seeds`` seeds, all timed interleaved.

Writes ``OUT/netadapt.md`` (both tables) beside the search's own files (``adapt.csv``,
``comparison.csv``, ``adapt.png``) in ``OUT/run/``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from mobilenets.adapt import AdaptConfig, LatencyTable, adapt, lut_accuracy
from mobilenets.adapt.lut import family_of, layer_specs
from mobilenets.models import create_model


def main() -> int:
    from mobilenets.malloc import MALLOC_TUNABLES, malloc_tuned

    if not malloc_tuned():  # glibc reads it at start only: CPU training 1.5-3x faster with it
        os.environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES
        os.execv(sys.executable, [sys.executable, *sys.argv])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--backend", default="ort")
    parser.add_argument("--match", type=float, default=0.5, help="the uniform α to meet")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--final-epochs", type=int, default=15)
    parser.add_argument("--holdout", type=int, default=300)
    parser.add_argument("--tables", type=int, default=20, help="random tables for the LUT check")
    parser.add_argument("--out", default="benchmarks/results/netadapt")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    probe = AdaptConfig(model=args.model, resolution=args.resolution, target_ratio=0.5,
                        backend=args.backend)  # fmt: skip
    pairs = np.array(lut_accuracy(probe, count=args.tables))
    error = 100 * (pairs[:, 1] / pairs[:, 0] - 1)
    lut = LatencyTable(args.backend, probe.threads, probe.lut_runs)
    matched = create_model(args.model, width_mult=args.match).table
    target = lut.predict(layer_specs(matched, family_of(args.model), args.resolution, 10))
    config = AdaptConfig(model=args.model, data=args.data, resolution=args.resolution,
                         target_ms=target, backend=args.backend, seeds=args.seeds,
                         finetune_steps=args.finetune_steps, final_epochs=args.final_epochs,
                         holdout=args.holdout)  # fmt: skip
    start = time.perf_counter()
    result = adapt(config, out / "run")
    minutes = (time.perf_counter() - start) / 60
    lines = [
        f"# NetAdapt: {args.model} on {args.data} at {args.resolution} px, {args.backend}, "
        f"1 thread (`python benchmarks/netadapt.py --data {args.data} --resolution "
        f"{args.resolution} --final-epochs {args.final_epochs} --holdout {args.holdout}`)",
        "",
        f"## The latency table: {len(pairs)} random tables, predicted vs measured",
        "",
        f"measured / predicted − 1: median {statistics.median(error):+.1f}%, range "
        f"{error.min():+.1f}% to {error.max():+.1f}%; correlation "
        f"{np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]:.3f}; predicted "
        f"{pairs[:, 0].min():.3f}–{pairs[:, 0].max():.3f} ms",
        "",
        f"## Adapted vs uniform α (target: the table's prediction for α={args.match:g}, "
        f"{target:.3f} ms; this invocation took {minutes:.1f} min, a resumed one reuses the "
        "finished steps and trainings)",
        "",
        "| network | measured ms (p10–p90) | val top-1 % mean (min–max), "
        f"{args.seeds} seeds | M mult-adds | params |",
        "|---|---|---|---|---|",
    ]
    for row in result["comparison"]:
        lines.append(
            f"| {row['network']} | {row['measured_ms']:.3f} ({row['ms_p10']:.3f}–"
            f"{row['ms_p90']:.3f}) | {row['top1_mean']:.2f} ({row['top1_min']:.2f}–"
            f"{row['top1_max']:.2f}) | {row['macs'] / 1e6:.2f} | {row['params']:,} |"
        )
    lines += [
        "",
        "## The search",
        "",
        "| step | cut | predicted ms | measured ms | held-out top-1 |",
        "|---|---|---|---|---|",
    ]
    for h in result["history"]:
        lines.append(
            f"| {h['step']} | {h['cut']} | {h['predicted_ms']:.3f} | {h['measured_ms']:.3f} | "
            f"{h['holdout_top1']:.2f} |"
        )
    (out / "netadapt.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
