"""The schema layer: every file the project reads back is untrusted data.

A crash, a disk error or a person may have changed any file the toolkit wrote earlier (NetAdapt's
state, the sweep's cells, the caches, run locks, the records inside saved networks). Each such
file has a schema here or beside its reader, written with msgspec (types, ranges, finiteness,
required and unknown keys), and is read through one of three doors that say what happens when
it does not fit:

* :func:`read_state` — a state or result file a run continues from: refused with one line
  naming the file and the field (:class:`~mobilenets.errors.DamagedFileError`), never guessed.
* :func:`mobilenets.fileio.read_cache` — something the toolkit can compute again: kept in an
  envelope holding the key it was computed for and a sha256 of its payload; a cache that does
  not fit (damaged, edited) is dropped with a one-line notice on stderr and rebuilt.
* :func:`validate` — a record already decoded (safetensors/ONNX metadata, a checkpoint's
  fields): the caller names the error class.

Numbers are bounded on the way in (no NaN, no inf, no counts that would allocate the machine
away), and a file larger than its reader's limit is refused before it is read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec

from mobilenets.errors import ConfigError, DamagedFileError, MobilenetsError, display

T = TypeVar("T")

#: Every number read back is finite and within these bounds (a float outside is refused).
FLOAT_LIMIT = 1e15
Finite = Annotated[float, msgspec.Meta(ge=-FLOAT_LIMIT, le=FLOAT_LIMIT)]
NonNegative = Annotated[float, msgspec.Meta(ge=0, le=FLOAT_LIMIT)]
Positive = Annotated[float, msgspec.Meta(gt=0, le=FLOAT_LIMIT)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
Text = Annotated[str, msgspec.Meta(max_length=4096)]

#: The largest file a reader takes by default (state and caches are a few kilobytes to a few
#: megabytes; a larger one is not ours).
DEFAULT_LIMIT = 64 * 2**20
CACHE_FORMAT = "mobilenets.cache/1"


class Record(msgspec.Struct, forbid_unknown_fields=True):
    """Base of the project's own JSON files: unknown keys are refused (a file from another
    version or another tool is not silently half-read)."""


class CacheEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    """What a cache file holds: its format, the key it was computed for (the sources and
    versions it depends on), a sha256 of the payload's bytes, and the payload."""

    format: str
    key: str
    sha256: str
    payload: msgspec.Raw


def _describe(err: Exception) -> str:
    """msgspec's message, with its ``$.field`` path put first (``history[2].top1: ...``)."""
    text = str(err)
    if " - at `$" in text:
        message, path = text.rsplit(" - at `$", 1)
        field = path.rstrip("`").lstrip(".") or "(top level)"
        return f"{display(field)}: {display(message)}"
    return display(text)


def validate(value: object, kind: type[T], where: str | Path, error: type[MobilenetsError]) -> T:
    """``value`` (already decoded) as ``kind``, or ``error`` naming ``where`` and the field."""
    try:
        return msgspec.convert(value, kind, strict=True)
    except msgspec.ValidationError as err:
        raise error(f"{display(where)}: {_describe(err)}") from None


def decode(data: bytes, kind: type[T], where: str | Path, error: type[MobilenetsError]) -> T:
    """JSON ``data`` as ``kind``: malformed JSON, a wrong encoding, NaN, a wrong type, a missing
    or unknown key, a number out of range all end in ``error`` naming ``where`` and the field."""
    try:
        return msgspec.json.decode(data, type=kind, strict=True)
    except msgspec.ValidationError as err:
        raise error(f"{display(where)}: {_describe(err)}") from None
    except msgspec.DecodeError as err:
        raise error(f"{display(where)} is not valid JSON ({display(err)})") from None


def read_bytes(path: str | Path, limit: int = DEFAULT_LIMIT, what: str = "file") -> bytes:
    """The bytes of a regular file no larger than ``limit``; a FIFO, device or socket is refused
    by its type before it is opened (opening one would wait forever)."""
    path = Path(path)
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise DamagedFileError(f"{display(path)} is not a regular file (a {what} was expected)")
    if info.st_size > limit:
        raise DamagedFileError(
            f"{display(path)} is {info.st_size:,} bytes; a {what} is at most {limit:,}"
        )
    with open(path, "rb") as f:
        return f.read(limit + 1)[:limit]


def read_settings(path: str | Path, what: str, limit: int = 2**20) -> dict:
    """A JSON object a user gives as a file (a table, a search space): a missing or unreadable
    file, or one that is not a JSON object, is one line (:class:`ConfigError`)."""
    try:
        data = read_bytes(path, limit=limit, what=f"{what} (JSON)")
    except FileNotFoundError:
        raise ConfigError(f"no {what} file at {display(path)}") from None
    except (OSError, DamagedFileError) as err:
        raise ConfigError(f"cannot read the {what} {display(err)[:160]}") from None
    return decode(data, dict, f"the {what} {display(path)}", ConfigError)


def read_state(path: str | Path, kind: type[T], what: str, limit: int = DEFAULT_LIMIT) -> T:
    """A state or result file as ``kind``; anything else is refused naming the file and field
    (and what to do: the file is the run's, so it is never rebuilt behind the user's back)."""
    data = read_bytes(path, limit, what)
    try:
        return decode(data, kind, path, DamagedFileError)
    except DamagedFileError as err:
        raise DamagedFileError(
            f"{err} — this {what} is damaged; restore it, or delete it to redo that work"
        ) from None


def encode(value: object) -> bytes:
    """JSON bytes of ``value`` (Structs, dicts, lists, numbers, text), indented for people."""
    return msgspec.json.format(msgspec.json.encode(value), indent=1)


def notice(message: str) -> None:
    """One line on stderr that the user should see (a cache rebuilt), never on stdout."""
    print(f"mobilenets: {display(message)}", file=sys.stderr)


def pack_cache(value: object, key: str) -> bytes:
    """The bytes of a cache file holding ``value`` for ``key`` (with the sha256 of its payload);
    :func:`mobilenets.fileio.write_cache` writes them atomically."""
    payload = msgspec.json.encode(value)
    digest = hashlib.sha256(payload).hexdigest()
    envelope = CacheEnvelope(CACHE_FORMAT, key, digest, msgspec.Raw(payload))
    return msgspec.json.encode(envelope)


def unpack_cache(data: bytes, kind: type[T], key: str, where: str | Path) -> T | None:
    """The payload of cache bytes written for ``key`` as ``kind``; ``None`` for another key's or
    another version's cache; :class:`DamagedFileError` when it does not fit."""
    envelope = decode(data, CacheEnvelope, where, DamagedFileError)
    if envelope.format != CACHE_FORMAT or envelope.key != key:
        return None  # another version's or another key's cache: not damaged, just not ours
    payload = bytes(envelope.payload)
    if hashlib.sha256(payload).hexdigest() != envelope.sha256:
        raise DamagedFileError(f"{display(where)}: its payload does not match its sha256")
    return decode(payload, kind, where, DamagedFileError)


def is_special_file(path: str | Path) -> bool:
    """Whether ``path`` is a FIFO, socket or device: reading one can wait forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


__all__ = [
    "Count",
    "Finite",
    "NonNegative",
    "Percent",
    "Positive",
    "PositiveInt",
    "Record",
    "Text",
    "decode",
    "encode",
    "is_special_file",
    "notice",
    "pack_cache",
    "read_bytes",
    "read_state",
    "unpack_cache",
    "validate",
]
