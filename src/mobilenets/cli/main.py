"""The ``mobilenets`` command: argparse subcommands, each a thin wrapper over one function.

Commands are imported only when they run (or when their ``--help`` is asked for): ``mobilenets
--help`` reads each command's one-line summary from its module's docstring without importing
it, so starting the command line does not import torch.

Errors a user can cause (the project's :class:`~mobilenets.errors.MobilenetsError` and the
expected OS errors: not found, permission, disk full, is a folder) end in one clear line on
stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import ast
import errno
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from mobilenets import __version__
from mobilenets.cli._common import positive, results_only_on_stdout
from mobilenets.cpu import note_computing, others_busy, process_env, set_threads
from mobilenets.errors import MobilenetsError, display
from mobilenets.malloc import reexec_with_malloc_tuning, should_reexec

#: Each command is the module ``mobilenets.cli.<name>``, imported when it is used.
COMMANDS = (
    "models",
    "profile",
    "paper",
    "train",
    "eval",
    "sweep",
    "convert",
    "predict",
    "export",
    "quantize",
    "bench",
    "adapt",
    "search",
)
#: Commands that train or run networks for long: they get the fast glibc malloc settings.
HEAVY_COMMANDS = {"train", "eval", "sweep", "bench", "adapt", "search"}
#: Commands that compute, and so take ``--threads`` for torch and every runtime. bench, adapt
#: and search define their own: the threads of the runtime they time.
THREADED_COMMANDS = {"train", "eval", "sweep", "predict", "export", "quantize"}
#: OS errors that are the user's or the machine's, not the program's: one line, no traceback.
USER_OS_ERRORS = {
    errno.ENOENT: "not found",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a folder",
    errno.ENOTDIR: "not a folder",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EEXIST: "already exists",
}
EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader left


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every flag's default in its help, once (not when the help already says it, and never
    "None" or an off switch's "False"); examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in help:
            return help
        return super()._get_help_string(action)


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"mobilenets.cli.{name}")


def summary(name: str) -> str:
    """A command's one-line summary: the first line of its module docstring, read from the
    source file without importing the module (and torch with it)."""
    origin = importlib.util.find_spec(f"mobilenets.cli.{name}").origin
    doc = ast.get_docstring(ast.parse(Path(origin).read_text(encoding="utf-8"))) or ""
    first = doc.strip().split("\n\n")[0]  # the first paragraph, however many lines it takes
    return " ".join(first.split()) or name


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; every command's flags, or with ``only`` just that command's (the others
    keep their one-line summary, so ``mobilenets --help`` lists them all)."""
    parser = argparse.ArgumentParser(
        prog="mobilenets", description="MobileNet V1/V2/V3: models, complexity, training."
    )
    parser.add_argument("--version", action="version", version=f"mobilenets {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        doc = summary(name)
        if only is not None and name != only:
            sub.add_parser(name, help=doc, description=doc)
            continue
        module = command_module(name)
        examples = getattr(module, "EXAMPLES", "")
        command = sub.add_parser(
            name,
            help=doc,
            description=doc,
            epilog=f"examples:\n{examples}" if examples else None,
            formatter_class=HelpFormatter,
        )
        module.add_arguments(command)
        if name in THREADED_COMMANDS:
            command.add_argument(
                "--threads",
                type=positive,
                default=None,
                help="compute threads: torch's and every runtime's (default: OMP_NUM_THREADS "
                "where set, else every core); fewer leaves cores to other work",
            )
    return parser


def requested_command(argv: Sequence[str]) -> str:
    """The command named on the command line ("" when none: ``mobilenets --help``)."""
    first = next((a for a in argv if not a.startswith("-")), "")
    return first if first in COMMANDS else ""


def error_message(err: BaseException) -> str | None:
    """The one line to print for a user error, or ``None`` for a bug (keep the traceback)."""
    if isinstance(err, MobilenetsError):
        text = str(err)
        if "Original Traceback" in text:  # raised in a DataLoader worker: keep the last line
            last = text.strip().splitlines()[-1]
            text = last.split(": ", 1)[1] if ": " in last else last
        return display(text)
    if isinstance(err, OSError) and err.errno in USER_OS_ERRORS:
        what = err.strerror or USER_OS_ERRORS[err.errno]
        where = err.filename if err.filename is not None else ""
        return display(f"{where}: {what}" if where else what)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (``main(["paper"])`` in tests)."""
    asks_help = {"-h", "--help"} & set(sys.argv[2:])
    heavy = len(sys.argv) > 1 and sys.argv[1] in HEAVY_COMMANDS and not asks_help
    if argv is None and heavy and should_reexec():
        reexec_with_malloc_tuning(sys.argv[1:])  # does not return
    if argv is None and heavy:  # before torch loads: libgomp reads its variables then
        ours = note_computing()  # first: a command started beside this one then sees it
        extra, line = process_env(sys.argv[1:], os.environ, others_busy(), ours)
        os.environ.update(extra)
        if line and os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 says it
            print(line, file=sys.stderr)
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=requested_command(words))
    try:
        args = parser.parse_args(words)
    except SystemExit as done:  # --help (0) or a bad flag (2, argparse printed why)
        return done.code if isinstance(done.code, int) else EXIT_USER_ERROR
    try:
        if args.command in THREADED_COMMANDS and args.threads:
            set_threads(args.threads)
        with results_only_on_stdout():
            return command_module(args.command).run(args)
    except KeyboardInterrupt:
        print(f"mobilenets {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``mobilenets models | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return EXIT_BROKEN_PIPE
    except Exception as err:
        message = error_message(err)
        if message is None:
            raise
        print(f"mobilenets {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
