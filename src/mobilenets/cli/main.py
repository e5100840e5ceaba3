"""The ``mobilenets`` command: argparse subcommands, each a thin wrapper over one function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mobilenets import __version__
from mobilenets.cli import models, paper, profile

COMMANDS = {
    "models": models,
    "profile": profile,
    "paper": paper,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenets", description="MobileNet V1/V2/V3: models, complexity, training."
    )
    parser.add_argument("--version", action="version", version=f"mobilenets {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        doc = (module.__doc__ or "").strip().splitlines()[0]
        module.add_arguments(sub.add_parser(name, help=doc, description=doc))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (``main(["paper"])`` in tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"mobilenets {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
