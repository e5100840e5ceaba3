"""The ``mobilenets`` command: argparse subcommands, each a thin wrapper over one function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mobilenets import __version__
from mobilenets.cli import (
    bench,
    convert,
    eval,
    export,
    models,
    paper,
    predict,
    profile,
    quantize,
    sweep,
    train,
)
from mobilenets.data import BadImageError
from mobilenets.training.malloc import reexec_with_malloc_tuning, should_reexec

COMMANDS = {
    "models": models,
    "profile": profile,
    "paper": paper,
    "train": train,
    "eval": eval,
    "sweep": sweep,
    "convert": convert,
    "predict": predict,
    "export": export,
    "quantize": quantize,
    "bench": bench,
}
#: Commands that train or run networks for long: they get the fast glibc malloc settings.
HEAVY_COMMANDS = {"train", "eval", "sweep", "bench"}


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
    if argv is None and len(sys.argv) > 1 and sys.argv[1] in HEAVY_COMMANDS and should_reexec():
        reexec_with_malloc_tuning(sys.argv[1:])  # does not return
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except (
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        MemoryError,
        BadImageError,
    ) as err:
        print(f"mobilenets {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
