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
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mobilenets.catalog import MODEL_NAMES
from mobilenets.fileio import cache_dir, write_text_atomic

PACKAGE = Path(__file__).resolve().parent.parent
#: The sources the counts depend on (relative to the package).
COUNTED_FROM = (
    "catalog.py",
    "layers.py",
    "models",
    "complexity/counter.py",
    "complexity/summary.py",
)


@dataclass(frozen=True)
class ModelSummary:
    name: str
    params: int
    paper_params: int
    macs: int
    input_size: int
    paper: str


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
                name, prof.total_params, prof.paper_params, prof.macs, entry.input_size, entry.paper
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
    path = cache_dir() / f"models-{cache_key()}.json"
    try:
        rows = {r["name"]: ModelSummary(**r) for r in json.loads(path.read_text("utf-8"))}
    except (OSError, ValueError, TypeError, KeyError):  # none yet, or unreadable: count again
        rows = {}
    if set(rows) != set(MODEL_NAMES):
        rows = {r.name: r for r in count_models(list(MODEL_NAMES))}
        with contextlib.suppress(OSError):  # a read-only home: right counts, only not kept
            write_text_atomic(path, json.dumps([asdict(r) for r in rows.values()], indent=1))
    return [rows[n] for n in names]
