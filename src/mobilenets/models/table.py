"""Explicit architecture tables: every layer's channels written out, as JSON-able data.

The papers give one table per family and scale it by α; NetAdapt (V3 paper, Section 5.2) gives
every layer its own width. A *table* holds the result either way, per block, in absolute
channels, so ``create_model(name, table=t)`` builds any of them and the table is stored with the
weights (it is one of the model's keywords) so a saved network rebuilds itself:

- V1: ``{"stem": 32, "rows": [{"s": 1, "c": 64}, ...]}`` (Table 1, one row per separable layer);
- V2: ``{"stem": 32, "rows": [{"exp": 32, "out": 16, "s": 1}, ...], "last": 1280}`` (Table 2
  unrolled: one row per bottleneck, ``exp`` its expansion channels, ``exp == in`` for t = 1;
  tables written before V2 and V3 rows shared the name ``out`` call it ``c`` and still read);
- V3: ``{"stem": 16, "rows": [{"k": 3, "exp": 16, "out": 16, "se": false, "nl": "RE", "s": 1},
  ...], "last": [960, 1280], "head_nl": "HS"}`` (Tables 1 and 2 with the expansion resolved).

The uniform-α models are tables too: ``model.table`` of ``create_model(name, width_mult=α)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from mobilenets.errors import ConfigError
from mobilenets.fileio import atomic_path
from mobilenets.schema import read_settings

MAX_CHANNELS = 16384
#: The fields of one row, per family, and of the whole table.
ROW_FIELDS = {
    "v1": ("s", "c"),
    "v2": ("exp", "out", "s"),
    "v3": ("k", "exp", "out", "se", "nl", "s"),
}
TABLE_FIELDS = {
    "v1": ("stem", "rows"),
    "v2": ("stem", "rows", "last"),
    "v3": ("stem", "rows", "last", "head_nl"),
}


def _channels(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_CHANNELS:
        raise ConfigError(f"{where} must be a channel count (1–{MAX_CHANNELS}), got {value!r}")
    return value


def _field(name: str, value: object, where: str) -> object:
    """One row field, checked: channels, stride, kernel, SE flag or nonlinearity."""
    if name in ("c", "exp", "out"):
        return _channels(value, where)
    if name == "s":
        if value not in (1, 2) or isinstance(value, bool):
            raise ConfigError(f"{where} (stride) must be 1 or 2, got {value!r}")
    elif name == "k":
        if value not in (1, 3, 5, 7) or isinstance(value, bool):
            raise ConfigError(f"{where} (kernel) must be 1, 3, 5 or 7, got {value!r}")
    elif name == "se":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} (squeeze-excite) must be true or false, got {value!r}")
    elif name == "nl" and value not in ("RE", "HS"):
        raise ConfigError(f"{where} (nonlinearity) must be 'RE' or 'HS', got {value!r}")
    return value


def _keys(mapping: object, expected: Sequence[str], where: str) -> Mapping:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where} must be a mapping with keys {list(expected)}, got {mapping!r}")
    if set(mapping) != set(expected):
        missing = [k for k in expected if k not in mapping]
        extra = [k for k in mapping if k not in expected]
        raise ConfigError(
            f"{where} must have exactly the keys {list(expected)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {extra}" if extra else "")
        )
    return mapping


def check_table(table: object, family: str) -> dict:
    """``table`` validated for ``family`` ("v1", "v2", "v3"), as plain JSON data (tuples become
    lists); a clear error names the first wrong entry and what is allowed."""
    where = f"{family.upper()} table"
    table = _keys(table, TABLE_FIELDS[family], where)
    rows = table["rows"]
    if not isinstance(rows, Sequence) or isinstance(rows, str) or not rows:
        raise ConfigError(f"{where}: 'rows' must be a non-empty list of rows, got {rows!r}")
    checked_rows = []
    for i, row in enumerate(rows):
        if family == "v2" and isinstance(row, Mapping) and "c" in row and "out" not in row:
            row = {("out" if k == "c" else k): v for k, v in row.items()}  # the older name
        row = _keys(row, ROW_FIELDS[family], f"{where}: rows[{i}]")
        checked_rows.append(
            {name: _field(name, row[name], f"{where}: rows[{i}].{name}") for name in row}
        )
    out = {"stem": _channels(table["stem"], f"{where}: 'stem'"), "rows": checked_rows}
    if family == "v2":
        out["last"] = _channels(table["last"], f"{where}: 'last'")
    if family == "v3":
        last = table["last"]
        if not isinstance(last, Sequence) or isinstance(last, str) or len(last) != 2:
            raise ConfigError(
                f"{where}: 'last' must be [last 1×1 conv channels, pre-logits channels], "
                f"got {last!r}"
            )
        out["last"] = [_channels(c, f"{where}: 'last'[{i}]") for i, c in enumerate(last)]
        out["head_nl"] = _field("nl", table["head_nl"], f"{where}: 'head_nl'")
    return out


def refuse_with_table(table: object, **scaling: tuple[object, object]) -> None:
    """A table is explicit: the keywords that would rescale it must keep their defaults.
    ``scaling`` maps a keyword to (its value, its default)."""
    if table is None:
        return
    changed = [name for name, (value, default) in scaling.items() if value != default]
    if changed:
        raise ConfigError(
            f"table= gives every layer's channels; {', '.join(changed)} cannot change it. "
            "Build the scaled model and take its .table instead"
        )


def write_table(table: Mapping, path: str | Path) -> Path:
    """The table as JSON at ``path`` (written atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(table, indent=1) + "\n")
    return path


def read_table(path: str | Path) -> dict:
    """A table written by :func:`write_table` (validated when a model is built from it)."""
    return read_settings(path, "table")
