"""Every figure the papers publish, beside our count, with the reason for each gap."""

from __future__ import annotations

import argparse

from mobilenets.cli import _common as cli_types
from mobilenets.cli._common import print_json

EXAMPLES = """\
  mobilenets paper
  mobilenets paper --json > paper.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from mobilenets.complexity.paper import compare, format_comparison

    rows = compare()
    if args.json:
        print_json([r.to_dict() for r in rows])
    else:
        cli_types.emit(format_comparison(rows))
    return 0
