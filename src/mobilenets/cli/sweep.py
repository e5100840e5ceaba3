"""Train and evaluate every width multiplier × resolution cell; write a table and a plot."""

from __future__ import annotations

import argparse

from mobilenets.cli.train import add_training_arguments, config_from_args
from mobilenets.training import SweepConfig, sweep


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SweepConfig()
    parser.add_argument(
        "--width-mults",
        type=_floats,
        default=list(defaults.width_mults),
        help="comma-separated α values (default 1,0.75,0.5,0.25)",
    )
    parser.add_argument(
        "--resolutions",
        type=_ints,
        default=list(defaults.resolutions),
        help="comma-separated input sizes in px (default 64,48,32)",
    )
    parser.add_argument("--out", default=defaults.out, help="sweep folder")
    add_training_arguments(parser, sweep=True)


def run(args: argparse.Namespace) -> int:
    config = SweepConfig(
        out=args.out,
        width_mults=args.width_mults,
        resolutions=args.resolutions,
        train=config_from_args(args, args.out),
    )
    rows = sweep(config)
    with open(f"{args.out}/sweep.md") as f:
        print(f.read())
    print(f"wrote {args.out}/sweep.csv, sweep.md, sweep.png ({len(rows)} cells)")
    return 0
