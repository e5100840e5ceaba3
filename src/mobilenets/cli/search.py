"""Platform-aware block search (V3's method): a supernet, regularised evolution on MnasNet's
reward with this machine's latency, then the result trained beside uniform α.

Writes ``search.csv`` (every candidate: its table, predicted latency, proxy accuracy, reward),
``table.json`` (the chosen network: ``mobilenets adapt --table table.json`` continues with
NetAdapt), ``comparison.csv`` and ``search.png``.
"""

from __future__ import annotations

import argparse
import sys

from mobilenets.adapt.config import BlockSearchConfig
from mobilenets.cli import _common as cli_types
from mobilenets.cli.adapt import add_search_arguments, print_comparison

EXAMPLES = """\
  mobilenets search --target-ratio 0.8 --out runs/search
  mobilenets search --data photos --resolution 64 --target-ms 1.2 --w -0.15 --out runs/search
  mobilenets search ... --space space.json   # {"kernels": [3, 5], "widths": [0.5, 1.0], ...}
  mobilenets search ... --out runs/search     # again after a kill: continues where it stopped
  mobilenets adapt --table runs/search/table.json --target-ratio 0.9 --out runs/adapt
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser, BlockSearchConfig, "runs/search")
    parser.add_argument(
        "--space",
        default=None,
        help="a JSON file of the space's choices (kernels, expansions, se, nl, depths, widths; "
        "default: V3's own, kernels 3/5/7, expansion 3/4/6, depth ±1, width ×0.75/1/1.25)",
    )


def config_from_args(args: argparse.Namespace) -> BlockSearchConfig:
    from mobilenets.adapt.block_search import read_space

    values = cli_types.field_values(BlockSearchConfig, args, skip=("uniform", "space"))
    space = read_space(args.space) if args.space else {}
    return BlockSearchConfig(**values, uniform=tuple(args.uniform), space=space)


def run(args: argparse.Namespace) -> int:
    from mobilenets.adapt.block_search import search_blocks

    result = search_blocks(config_from_args(args), args.out)
    if "comparison" not in result:  # a torchrun process other than the first
        return 0
    if args.json:
        cli_types.print_json(result["comparison"])
        return 0
    print_comparison(result["comparison"])
    print(f"wrote {args.out}/search.csv, table.json, comparison.csv, search.png", file=sys.stderr)
    return 0
