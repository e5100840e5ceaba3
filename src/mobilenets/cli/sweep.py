"""Train and evaluate every width multiplier × resolution cell; write a table and a plot."""

from __future__ import annotations

import argparse
import json
import sys

from mobilenets.cli import _common as cli_types
from mobilenets.cli.train import add_training_arguments, config_from_args
from mobilenets.training.config import SweepConfig

EXAMPLES = """\
  mobilenets sweep --out runs/sweep
  mobilenets sweep --width-mults 1,0.5 --resolutions 64,32 --epochs 4 --out runs/small
"""


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must be I/N, e.g. 0/2, got {text!r}") from None
    if not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"--shard I/N needs 0 ≤ I < N, got {text!r}")
    return shard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SweepConfig()
    parser.add_argument(
        "--width-mults",
        type=cli_types.comma_list(cli_types.width_mult),
        default=list(defaults.width_mults),
        help="comma-separated α values (default 1,0.75,0.5,0.25)",
    )
    parser.add_argument(
        "--resolutions",
        type=cli_types.comma_list(cli_types.resolution),
        default=list(defaults.resolutions),
        help="comma-separated input sizes in px (default 64,48,32)",
    )
    parser.add_argument("--out", default=defaults.out, help="sweep folder")
    parser.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        help="I/N: train only cells I, I+N, ... (run N shards on N machines into one shared "
        "--out; any shard's table includes every finished cell)",
    )
    add_training_arguments(parser, sweep=True)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    from mobilenets.training.grid import sweep

    config = SweepConfig(
        out=args.out,
        width_mults=args.width_mults,
        resolutions=args.resolutions,
        train=config_from_args(args, args.out),
        shard=args.shard,
    )
    rows = sweep(config)
    if args.json:
        cli_types.emit(json.dumps(rows, indent=2))
    else:
        with open(f"{args.out}/sweep.md") as f:
            cli_types.emit(f.read())
    print(f"wrote {args.out}/sweep.csv, sweep.md, sweep.png ({len(rows)} cells)", file=sys.stderr)
    return 0
