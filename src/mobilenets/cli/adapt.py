"""NetAdapt: cut a network's layers to a latency target measured here; compare with uniform α."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from mobilenets.adapt.config import UNIFORM_ALPHAS, AdaptConfig
from mobilenets.cli import _common as cli_types

EXAMPLES = """\
  mobilenets adapt --model mobilenet_v3_small --target-ratio 0.6 --out runs/adapt
  mobilenets adapt --model mobilenet_v2 --width-mult 0.75 --data photos --resolution 96 \\
      --target-ms 1.5 --backend ort --out runs/adapt_v2
  mobilenets adapt ... --out runs/adapt          # again after a kill: continues where it stopped
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser, AdaptConfig, "runs/adapt")


def add_search_arguments(parser: argparse.ArgumentParser, config: type, out: str) -> None:
    """The flags of a latency search (NetAdapt's, the block search's), generated from its
    config's fields; the target's two exclusive flags, the list of α, ``--out`` and ``--json``
    added here, with the fields' own help and ranges."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    target = parser.add_mutually_exclusive_group(required=True)
    for name in ("target_ms", "target_ratio"):
        meta = fields[name].metadata
        flag = "--" + name.replace("_", "-")
        target.add_argument(flag, type=cli_types.in_range(meta["range"]), help=meta["help"])
    cli_types.add_field_arguments(parser, config)
    parser.add_argument(
        "--uniform",
        type=cli_types.comma_list(cli_types.width_mult),
        default=list(UNIFORM_ALPHAS),
        help=fields["uniform"].metadata["help"],
    )
    parser.add_argument("--out", default=out, help="output folder (a search there is continued)")
    parser.add_argument(
        "--json", action="store_true", help="print the comparison as JSON on stdout"
    )


def config_from_args(args: argparse.Namespace) -> AdaptConfig:
    values = cli_types.field_values(AdaptConfig, args, skip=("uniform",))
    return AdaptConfig(**values, uniform=tuple(args.uniform))


def run(args: argparse.Namespace) -> int:
    from mobilenets.adapt.run import adapt

    result = adapt(config_from_args(args), args.out)
    if args.json:
        cli_types.print_json(result["comparison"])
        return 0
    print_comparison(result["comparison"])
    print(f"wrote {args.out}/adapt.csv, table.json, comparison.csv, adapt.png", file=sys.stderr)
    return 0


def print_comparison(rows: list[dict]) -> None:
    """The comparison's table on stdout: measured latency, val top-1, mult-adds."""
    cli_types.emit(f"{'network':<10} {'measured ms':>12} {'top-1 %':>22} {'M mult-adds':>12}")
    for row in rows:
        top1 = f"{row['top1_mean']:.2f} ({row['top1_min']:.2f}–{row['top1_max']:.2f})"
        cli_types.emit(
            f"{row['network']:<10} {row['measured_ms']:>12.3f} {top1:>22} "
            f"{row['macs'] / 1e6:>12.2f}"
        )
