"""List every registered variant with its parameters, mult-adds and default input size."""

from __future__ import annotations

import argparse

from mobilenets.cli import _common as cli_types
from mobilenets.cli._common import print_json
from mobilenets.errors import ConfigError, display

EXAMPLES = """\
  mobilenets models
  mobilenets models 'mobilenet_v3*' --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'mobilenet_v3*'")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from msgspec.structs import asdict

    from mobilenets.catalog import MODEL_NAMES
    from mobilenets.complexity.summary import summarize_models

    rows = summarize_models(args.pattern)
    if not rows:
        raise ConfigError(
            f"no model matches {display(args.pattern)}; the models are {', '.join(MODEL_NAMES)}"
        )
    if args.json:
        print_json([asdict(r) for r in rows])
        return 0
    cli_types.emit(
        f"{'model':<28} {'task':<14} {'params':>11} {'paper params':>13} {'mult-adds':>15} "
        f"{'input':>6}  paper"
    )
    for r in rows:
        cli_types.emit(
            f"{r.name:<28} {r.task:<14} {r.params:>11,} {r.paper_params:>13,} {r.macs:>15,} "
            f"{r.input_size:>6}  {r.paper}"
        )
    return 0
