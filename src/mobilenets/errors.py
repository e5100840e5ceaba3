"""The project's own errors: one small hierarchy that the command line turns into one clear line.

Every error a user can cause (a bad argument, bad data, a bad file, a diverged run) is a
:class:`MobilenetsError`; anything else that escapes is a bug and keeps its traceback. Each
class also derives from the built-in error a Python caller would expect (``ValueError`` for bad
values, ``FileExistsError`` for a refused overwrite), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "BadImageError",
    "CacheTooLargeError",
    "CheckpointError",
    "ConfigError",
    "ConfigTypeError",
    "DamagedFileError",
    "DataError",
    "MissingDataError",
    "MobilenetsError",
    "OverwriteError",
    "RunLockedError",
    "TrainingDivergedError",
    "WeightsError",
    "ZeroWorkError",
    "display",
    "listed",
    "printable",
]


class MobilenetsError(Exception):
    """Base of every error a user can cause; the CLI prints its message on one line."""


class ConfigError(MobilenetsError, ValueError):
    """An argument or setting outside what is allowed (the message says what is)."""


class ConfigTypeError(ConfigError, TypeError):
    """An argument of the wrong type, or a keyword the function does not take."""


class DataError(MobilenetsError, ValueError):
    """Data that cannot be used as asked: classes that do not match, an empty split, ..."""


class MissingDataError(DataError, FileNotFoundError):
    """A data folder, split or file that is not there (the message says what was expected)."""


class CacheTooLargeError(DataError, MemoryError):
    """An in-memory cache that would not fit (the message gives the estimate)."""


class BadImageError(DataError):
    """An image file that cannot be decoded (the message names the file)."""


class ZeroWorkError(DataError):
    """A run that would do no work: no optimizer step, no image evaluated."""


class DamagedFileError(MobilenetsError, ValueError):
    """A file the project wrote and reads back (a run's state, a cell, a lock, a cache) that
    does not fit its schema: damaged, edited, or not what it claims to be."""


class WeightsError(MobilenetsError, ValueError):
    """A weights file, state dict or ONNX model that is wrong, truncated or does not fit."""


class CheckpointError(WeightsError):
    """A training checkpoint that is unreadable, foreign or holds non-finite weights."""


class TrainingDivergedError(MobilenetsError, FloatingPointError):
    """A non-finite loss, gradient or weight: the run stopped before writing a checkpoint."""


class OverwriteError(MobilenetsError, FileExistsError):
    """An output that would overwrite an input or a run's files."""


class RunLockedError(MobilenetsError, FileExistsError):
    """A run folder another live process is writing to."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # newline and tab included: one line


def display(value: object) -> str:
    """``value`` as text that is safe to print on one line: control characters (newline and
    tab included, so a file name cannot forge a line) and bytes that are not UTF-8 (file names
    from ``os.fsdecode``) are shown as escapes, never written raw."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name decoding made
        raw = text.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def printable(value: object) -> str:
    """``value`` with its control characters (newline, escape, ...) escaped and everything else
    kept, bytes that are not UTF-8 included: what a data file such as a CSV writes, so that a
    file name cannot forge a line and still names the real file."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def listed(items: list, limit: int = 6) -> str:
    """The first ``limit`` items, printed safely and comma-separated, ``...`` when there are
    more: how every error names the keys, classes or files at fault."""
    shown = ", ".join(display(item) for item in items[:limit])
    return shown + (" ..." if len(items) > limit else "")
