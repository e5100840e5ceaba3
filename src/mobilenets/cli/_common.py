"""Small helpers shared by the CLI commands: JSON output and argparse value checks.

Numeric flags are checked where they are parsed: a value outside its range is an argparse
error (exit 2) that names the flag and says what is allowed, before anything runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable

MAX_RESOLUTION = 4096
MAX_WIDTH_MULT = 8.0


def print_json(payload: object) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is outside {_range(low, high)}")
        return value

    parse.__name__ = "integer"
    return parse


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """An argparse type: a finite float in the range (open or closed at each end)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(
                f"{text} is outside {_range(low, high, low_open, high_open)}"
            )
        return value

    parse.__name__ = "number"
    return parse


def _range(low: float | None, high: float | None, lo_open: bool = False, hi_open: bool = False):
    left = "(" if lo_open or low is None else "["
    right = ")" if hi_open or high is None else "]"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


def comma_list(item: Callable[[str], object]) -> Callable[[str], list]:
    """An argparse type: a non-empty comma-separated list, each item parsed by ``item``."""

    def parse(text: str) -> list:
        values = [item(v.strip()) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError("needs at least one value, e.g. 1,0.75,0.5")
        return values

    parse.__name__ = "list"
    return parse


width_mult = number(0, MAX_WIDTH_MULT, low_open=True)
resolution = integer(32, MAX_RESOLUTION)
positive = integer(1)
