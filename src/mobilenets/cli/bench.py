"""Latency: ours beside torchvision (timm for V1) per backend; table, CSV, JSON and a PNG."""

from __future__ import annotations

import argparse
import sys

from mobilenets.cli import _common as cli_types
from mobilenets.export.choices import BACKENDS, DEFAULT_BACKENDS, DEFAULT_MODELS

EXAMPLES = """\
  mobilenets bench
  mobilenets bench --models mobilenet_v2 --backends eager,ort,ort_int8 --threads 1
"""


_list = cli_types.comma_list(str)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models", type=_list, default=list(DEFAULT_MODELS), help="comma-separated model names"
    )
    parser.add_argument(
        "--backends",
        type=_list,
        default=list(DEFAULT_BACKENDS),
        help=f"comma-separated, from {','.join(BACKENDS)}",
    )
    parser.add_argument("--batch-size", type=cli_types.positive, default=1, help="images a call")
    parser.add_argument(
        "--resolution", type=cli_types.resolution, default=224, help="input size in px"
    )
    parser.add_argument(
        "--threads",
        type=cli_types.integer(1, 1024),
        default=None,
        help="intra-op threads (default: OMP_NUM_THREADS where set, else every core)",
    )
    parser.add_argument("--runs", type=cli_types.positive, default=50, help="timed calls")
    parser.add_argument(
        "--warmup", type=cli_types.integer(0), default=10, help="untimed calls first"
    )
    parser.add_argument("--out", default="runs/bench", help="folder for bench.md/csv/json/png")


def run(args: argparse.Namespace) -> int:
    from mobilenets.export.bench import run_bench
    from mobilenets.export.bench_report import format_bench, write_bench

    result = run_bench(
        args.models,
        args.backends,
        batch_size=args.batch_size,
        resolution=args.resolution,
        threads=args.threads,
        warmup=args.warmup,
        runs=args.runs,
        log=lambda line: print(line, file=sys.stderr),
    )
    out = write_bench(args.out, result)
    from mobilenets.export.recommend import record_fastest

    record_fastest(result)  # export and quantize recommend from it
    cli_types.emit(format_bench(result))
    print(f"wrote {out}/bench.md, bench.csv, bench.json, bench.png", file=sys.stderr)
    return 0
