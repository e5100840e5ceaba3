"""Small helpers shared by the CLI commands: JSON output and argparse value checks.

Numeric flags are checked where they are parsed, with the same :class:`Range` that checks
``TrainConfig``: a value outside it is an argparse error (exit 2) that names the flag and says
what is allowed, before anything runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from mobilenets.catalog import MIN_INPUT_SIZE
from mobilenets.training.config import MAX_RESOLUTION, MAX_WIDTH_MULT, Range

_RESULTS: list[TextIO] = []


def results() -> TextIO:
    """Where a command's results (tables, JSON) go: the real stdout, also while
    :func:`results_only_on_stdout` sends everything else printed there to stderr."""
    return _RESULTS[-1] if _RESULTS else sys.stdout


def emit(*values: object, **kwargs: object) -> None:
    """Print a result (a table row, JSON) on stdout."""
    print(*values, file=results(), **kwargs)


@contextlib.contextmanager
def results_only_on_stdout() -> Iterator[None]:
    """While a command runs, whatever a library prints on stdout (ONNX Runtime's calibration
    messages, ...) goes to stderr: stdout carries the command's results only, so ``--json``
    output always parses (``| jq``)."""
    _RESULTS.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _RESULTS.pop()


def print_json(payload: object) -> None:
    json.dump(payload, results(), indent=2, default=str)
    results().write("\n")


def in_range(allowed: Range) -> Callable[[str], float | int]:
    """An argparse type that accepts the numbers in ``allowed``."""

    def parse(text: str) -> float | int:
        try:
            value = int(text) if allowed.integer else float(text)
        except ValueError:
            kind = "an integer" if allowed.integer else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not allowed.contains(value):
            raise argparse.ArgumentTypeError(f"{text} is not {allowed.describe()}")
        return value

    parse.__name__ = "integer" if allowed.integer else "number"
    return parse


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]``."""
    return in_range(Range(low, high, integer=True))


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """An argparse type: a finite float in the range (open or closed at each end)."""
    return in_range(Range(low, high, low_open, high_open))


def comma_list(item: Callable[[str], object]) -> Callable[[str], list]:
    """An argparse type: a non-empty comma-separated list of distinct items, each parsed by
    ``item`` (a repeated item is refused: it would be trained, timed or listed twice)."""

    def parse(text: str) -> list:
        values = [item(v.strip()) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError("needs at least one value, e.g. 1,0.75,0.5")
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(f"{', '.join(repeated)} given more than once")
        return values

    parse.__name__ = "list"
    return parse


width_mult = number(0, MAX_WIDTH_MULT, low_open=True)
resolution = integer(MIN_INPUT_SIZE, MAX_RESOLUTION)
positive = integer(1)


def add_field_arguments(
    parser: argparse.ArgumentParser,
    config: type,
    *,
    include: Callable[[object], bool] = lambda field: True,
    defaults: dict[str, object] | None = None,
) -> None:
    """One flag per field of a config dataclass, generated from the field: its type, default,
    range or choices and help (fields whose metadata says ``cli=False`` are left out, and those
    ``include`` refuses). ``defaults`` overrides a field's default on this command."""
    import dataclasses

    for f in dataclasses.fields(config):
        meta = f.metadata
        if not meta.get("cli", True) or not include(f):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = (defaults or {}).get(f.name, f.default)
        if isinstance(default, bool):
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(flag, action=action, default=default, help=meta["help"])
        elif meta.get("choices"):
            choices = meta["choices"]
            kind = type(choices[0]) if not isinstance(choices[0], str) else None
            parser.add_argument(
                flag, choices=choices, type=kind, default=default, help=meta["help"]
            )
        elif meta.get("range") is not None:
            parser.add_argument(
                flag, type=in_range(meta["range"]), default=default, help=meta["help"]
            )
        else:
            parser.add_argument(flag, default=default, help=meta["help"])


def field_values(config: type, args: argparse.Namespace, *, skip: tuple[str, ...] = ()) -> dict:
    """The values of a config's fields that the parsed flags hold (others keep defaults)."""
    import dataclasses

    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(config)
        if hasattr(args, f.name) and f.name not in skip
    }
