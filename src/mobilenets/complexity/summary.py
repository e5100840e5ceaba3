"""One line per registered variant: parameters, mult-adds, default input size, paper table.

Counting builds and profiles every variant (about 3 s, most of it importing torch), so the rows
are cached in ``$MOBILENETS_CACHE`` (default ``~/.cache/mobilenets``) under a key made of the
source files that decide them and the installed torch: ``mobilenets models`` then starts in a
fraction of a second, and any change to a model, a layer or a counting rule counts again.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.metadata
from pathlib import Path

from mobilenets.catalog import MODEL_NAMES
from mobilenets.fileio import cache_dir, read_cache, write_cache
from mobilenets.schema import Count, PositiveInt, Record, Text

PACKAGE = Path(__file__).resolve().parent.parent
#: The sources the counts depend on (relative to the package).
COUNTED_FROM = (
    "catalog.py",
    "layers.py",
    "models",
    "complexity/counter.py",
    "complexity/summary.py",
)


class ModelSummary(Record, frozen=True):
    """One variant's counts (a cached row: read back through the schema)."""

    name: Text
    params: Count
    paper_params: Count
    macs: Count
    input_size: PositiveInt
    paper: Text
    task: Text = "classification"


def count_models(names: list[str]) -> list[ModelSummary]:
    """Build each variant (default keywords) and count it at its default input size."""
    from mobilenets.complexity.counter import profile
    from mobilenets.models.registry import create_model, get_model_entry

    out = []
    for name in names:
        entry = get_model_entry(name)
        prof = profile(create_model(name), entry.input_size)
        out.append(
            ModelSummary(
                name,
                prof.total_params,
                prof.paper_params,
                prof.macs,
                entry.input_size,
                entry.paper,
                entry.task,
            )
        )
    return out


def cache_key() -> str:
    """A digest of the counting sources and the torch version they ran with."""
    digest = hashlib.sha256()
    for part in COUNTED_FROM:
        path = PACKAGE / part
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(PACKAGE).as_posix().encode())
            digest.update(file.read_bytes())
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        digest.update(importlib.metadata.version("torch").encode())
    return digest.hexdigest()[:16]


def summarize_models(pattern: str | None = None, *, cache: bool = True) -> list[ModelSummary]:
    """Every built-in variant matching the shell-style ``pattern`` (all when ``None``), counted
    once and cached (``cache=False`` counts afresh and leaves the cache alone)."""
    names = [n for n in MODEL_NAMES if pattern is None or fnmatch.fnmatch(n, pattern)]
    if not cache:
        return count_models(names)
    key = cache_key()
    path = cache_dir() / "models.json"
    cached = read_cache(path, list[ModelSummary], key) or []
    rows = {r.name: r for r in cached}
    if len(rows) != len(cached) or set(rows) != set(MODEL_NAMES):
        rows = {r.name: r for r in count_models(list(MODEL_NAMES))}
        write_cache(path, list(rows.values()), key)
    return [rows[n] for n in names]
