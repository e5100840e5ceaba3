"""The block search against uniform α; how well its proxy ranks networks and its latency table
predicts them, on this machine.

    python benchmarks/block_search.py [--data photos] [--resolution 64] [--match 0.75]
                                      [--seeds 3] [--ranked 12] [--out benchmarks/results/...]

1. The target: the latency table's prediction for V3-Small at uniform α = ``--match``.
2. ``mobilenets search`` with that target (``search_blocks()``): the supernet, the evolution,
   the chosen network and every uniform α trained from scratch for ``--seeds`` seeds, all
   timed interleaved (the whole invocation timed).
3. The proxy's ranking: ``--ranked`` candidates of the search spread over its proxy scores,
   each trained alone from scratch with the same budget (one seed); Kendall's τ and
   Spearman's ρ between proxy top-1 and val top-1.
4. The latency table over the space: the same candidates predicted (sum of their layers) and
   measured whole, interleaved.
5. Then NetAdapt from the searched table (``adapt --table``) to the table's prediction for
   uniform α = ``--adapt-match``: V3's pipeline, search then adapt.

Writes ``OUT/block_search.md`` beside the search's own files in ``OUT/run/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from mobilenets.adapt import adapt
from mobilenets.adapt.block_search import search_blocks
from mobilenets.adapt.config import AdaptConfig, BlockSearchConfig
from mobilenets.adapt.lut import LatencyTable, layer_specs
from mobilenets.adapt.run import measure, train_from_scratch
from mobilenets.cpu import cpu_name, this_cpu
from mobilenets.models import create_model
from mobilenets.models.search_space import SearchSpace


def spread_over_scores(scored: list[dict], count: int) -> list[dict]:
    """``count`` distinct candidates at evenly spaced ranks of proxy top-1."""
    unique = {json.dumps(s["candidate"], sort_keys=True): s for s in scored}
    ranked = sorted(unique.values(), key=lambda s: s["proxy_top1"])
    picks = np.linspace(0, len(ranked) - 1, min(count, len(ranked))).round().astype(int)
    return [ranked[i] for i in sorted(set(picks.tolist()))]


def main() -> int:
    from mobilenets.malloc import MALLOC_TUNABLES, malloc_tuned

    if not malloc_tuned():  # glibc reads it at start only: CPU training 1.5-3x faster with it
        os.environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES
        os.execv(sys.executable, [sys.executable, *sys.argv])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="photos")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--backend", default="ort")
    parser.add_argument("--match", type=float, default=0.75, help="the uniform α to meet")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--supernet-epochs", type=int, default=60)
    parser.add_argument("--final-epochs", type=int, default=30)
    parser.add_argument("--holdout", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=64)
    parser.add_argument("--ranked", type=int, default=12, help="candidates trained alone")
    parser.add_argument(
        "--adapt-match",
        type=float,
        default=0.5,
        help="then NetAdapt from the searched table to the prediction for this uniform α (0: no)",
    )
    parser.add_argument("--out", default=None, help="default: benchmarks/results/block_search_KIND")
    args = parser.parse_args()
    out = Path(args.out or f"benchmarks/results/block_search_{this_cpu()}")
    out.mkdir(parents=True, exist_ok=True)
    lut = LatencyTable(args.backend, 1, 30)
    matched = create_model("mobilenet_v3_small", width_mult=args.match).table
    target = lut.predict(layer_specs(matched, "v3", args.resolution, 13))
    config = BlockSearchConfig(
        data=args.data, resolution=args.resolution, target_ms=target, backend=args.backend,
        seeds=args.seeds, supernet_epochs=args.supernet_epochs, final_epochs=args.final_epochs,
        holdout=args.holdout, cycles=args.cycles,
    )  # fmt: skip
    start = time.perf_counter()
    result = search_blocks(config, out / "run")
    minutes = (time.perf_counter() - start) / 60
    scored = json.loads((out / "run" / "search_state.json").read_text())["candidates"]
    space = SearchSpace.from_dict(config.space)
    picked = spread_over_scores(scored, args.ranked)
    trained = []
    for s in picked:
        folder = out / "run" / "ranked" / f"candidate_{s['index']:03d}"
        table = space.table(s["candidate"])
        summary = train_from_scratch(config, folder, 0, print, table=table)
        trained.append(summary["val_top1"])
    proxies = [s["proxy_top1"] for s in picked]
    tau, tau_p = stats.kendalltau(proxies, trained)
    rho, rho_p = stats.spearmanr(proxies, trained)
    tables = {f"candidate {s['index']}": space.table(s["candidate"]) for s in picked}
    measured = measure(tables, config, 13, config.measure_runs)
    predicted = [s["predicted_ms"] for s in picked]
    whole = [measured[f"candidate {s['index']}"][0] for s in picked]
    error = 100 * (np.array(whole) / np.array(predicted) - 1)
    lines = report(args, config, result, minutes, picked, trained, predicted, whole)
    lines[4:4] = [
        f"## The proxy's ranking: {len(picked)} candidates trained alone ({args.final_epochs} "
        "epochs, seed 0)",
        "",
        f"Kendall τ {tau:.3f} (p = {tau_p:.3f}), Spearman ρ {rho:.3f} (p = {rho_p:.3f}) between "
        "proxy top-1 (supernet weights, BN recalibrated, held-out training images) and val "
        "top-1 trained alone.",
        "",
        f"## The latency table over the space: the same {len(picked)} candidates",
        "",
        f"measured / predicted − 1: median {statistics.median(error):+.1f}%, range "
        f"{error.min():+.1f}% to {error.max():+.1f}%; correlation "
        f"{np.corrcoef(predicted, whole)[0, 1]:.3f}; Kendall τ "
        f"{stats.kendalltau(predicted, whole)[0]:.3f}",
        "",
    ]
    if args.adapt_match:
        lines += search_then_adapt(args, config, out / "run")
    (out / "block_search.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def search_then_adapt(args: argparse.Namespace, config: BlockSearchConfig, run: Path) -> list[str]:
    """NetAdapt from the searched table (``adapt --table``) to the table's prediction for
    uniform α = ``--adapt-match``, with the same budgets; the uniform-α runs of the search are
    reused (copied, read back from their summaries), all timed again in one phase."""
    folder = run / "adapt"
    for uniform in run.glob("uniform_*"):
        if not (folder / uniform.name).exists():
            shutil.copytree(uniform, folder / uniform.name)
    lut = LatencyTable(args.backend, 1, 30)
    matched = create_model("mobilenet_v3_small", width_mult=args.adapt_match).table
    target = lut.predict(layer_specs(matched, "v3", args.resolution, 13))
    adapt_config = AdaptConfig(
        model="mobilenet_v3_small", table=str(run / "table.json"), data=args.data,
        resolution=args.resolution, target_ms=target, backend=args.backend, seeds=args.seeds,
        final_epochs=args.final_epochs, holdout=args.holdout, finetune_steps=60,
    )  # fmt: skip
    start = time.perf_counter()
    result = adapt(adapt_config, folder)
    minutes = (time.perf_counter() - start) / 60
    lines = [
        "",
        f"## Searched, then adapted (`adapt --table`: NetAdapt to the table's prediction for "
        f"α={args.adapt_match:g}, {target:.3f} ms; {len(result['history']) - 1} steps, "
        f"{minutes:.1f} min; the uniform-α runs reused, all timed again in one phase)",
        "",
        "| network | measured ms (p10–p90) | val top-1 % mean (min–max), "
        f"{args.seeds} seeds | M mult-adds | params |",
        "|---|---|---|---|---|",
    ]
    for row in result["comparison"]:
        name = "searched + adapted" if row["network"] == "adapted" else row["network"]
        lines.append(
            f"| {name} | {row['measured_ms']:.3f} ({row['ms_p10']:.3f}–{row['ms_p90']:.3f}) | "
            f"{row['top1_mean']:.2f} ({row['top1_min']:.2f}–{row['top1_max']:.2f}) | "
            f"{row['macs'] / 1e6:.2f} | {row['params']:,} |"
        )
    return lines


def report(
    args: argparse.Namespace,
    config: BlockSearchConfig,
    result: dict,
    minutes: float,
    picked: list[dict],
    trained: list[float],
    predicted: list[float],
    whole: list[float],
) -> list[str]:
    """The markdown report: the comparison, then each ranked candidate's figures."""
    lines = [
        f"# Block search: mobilenet_v3_small space on {args.data} at {args.resolution} px, "
        f"{args.backend}, 1 thread, on {cpu_name()} ({this_cpu()}) "
        f"(`python benchmarks/block_search.py --data {args.data} --resolution "
        f"{args.resolution} --seeds {args.seeds}`)",
        "",
        f"The whole invocation took {minutes:.1f} min on 2 cores (a resumed one reuses the "
        "supernet, the scored candidates and the finished trainings).",
        "",
        f"## Searched vs uniform α (target: the table's prediction for α={args.match:g}, "
        f"{result['target_ms']:.3f} ms; w = {config.w:g}; {config.population + config.cycles} "
        f"candidates; supernet {config.supernet_epochs} epochs)",
        "",
        "| network | measured ms (p10–p90) | predicted ms | val top-1 % mean (min–max), "
        f"{args.seeds} seeds | M mult-adds | params |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["comparison"]:
        lines.append(
            f"| {row['network']} | {row['measured_ms']:.3f} ({row['ms_p10']:.3f}–"
            f"{row['ms_p90']:.3f}) | {row['predicted_ms']:.3f} | {row['top1_mean']:.2f} "
            f"({row['top1_min']:.2f}–{row['top1_max']:.2f}) | {row['macs'] / 1e6:.2f} | "
            f"{row['params']:,} |"
        )
    lines += [
        "",
        "## The ranked candidates",
        "",
        "| candidate | proxy top-1 | trained alone, val top-1 | predicted ms | measured ms |",
        "|---|---|---|---|---|",
    ]
    for s, top1, p, m in zip(picked, trained, predicted, whole, strict=True):
        lines.append(f"| {s['index']} | {s['proxy_top1']:.2f} | {top1:.2f} | {p:.3f} | {m:.3f} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
