"""Which format to ship a model in: the fastest path measured on this machine.

The winner differs by model and batch size (and by machine), so it is measured, not assumed:
``mobilenets bench`` records its fastest path per (model, batch size) in
``$MOBILENETS_CACHE/fastest.json``; ``export`` and ``quantize`` read it back and recommend. Where
this machine has no measurement yet they quote the reference one (:data:`REFERENCE_FASTEST`,
``benchmarks/results/threads``) and give the command that measures here.
"""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path
from typing import Annotated

import msgspec

from mobilenets.errors import display
from mobilenets.export.choices import BACKENDS
from mobilenets.fileio import cache_dir, read_cache, write_cache
from mobilenets.schema import Positive, PositiveInt, Record, Text

FASTEST_FILE = "fastest.json"
FASTEST_KEY = "fastest/1"
REFERENCE_MACHINE = "a 2-core AMD EPYC with AVX-512 VNNI (benchmarks/results/threads)"
#: The fastest of our paths at 224 px on the reference machine, per (model, batch):
#: (backend, threads, ms). Each setting ran alone in a fresh process (benchmarks/threads.py);
#: at batch 32 the runner-up was within 5–12% (V1: ort_int8, V2: openvino_int8), and those rows
#: ran with other work on the machine (wide per-round ranges): rerun them where it matters.
REFERENCE_FASTEST: dict[tuple[str, int], tuple[str, int, float]] = {
    ("mobilenet_v1", 1): ("openvino_int8", 2, 1.93),
    ("mobilenet_v2", 1): ("openvino_int8", 2, 1.57),
    ("mobilenet_v3_large", 1): ("executorch_int8", 2, 1.94),
    ("mobilenet_v3_small", 1): ("ort", 2, 1.05),
    ("mobilenet_v1", 32): ("openvino_int8", 1, 113.5),
    ("mobilenet_v2", 32): ("ort_int8", 2, 57.8),
    ("mobilenet_v3_large", 32): ("ort_int8", 2, 77.7),
    ("mobilenet_v3_small", 32): ("ort", 2, 35.8),
}


class Fastest(Record, frozen=True):
    """One measured winner in ``fastest.json`` (a cache: read back through the schema)."""

    backend: Annotated[str, msgspec.Meta(pattern="^(" + "|".join(BACKENDS) + ")$")]
    threads: Annotated[int, msgspec.Meta(ge=1, le=4096)]
    median_ms: Positive
    resolution: PositiveInt
    date: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    machine: Text
    untrusted: bool


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the architecture where it is not known."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores"


def read_fastest(path: Path | None = None) -> dict[str, Fastest]:
    """The measured winners kept by :func:`record_fastest` (empty when none or damaged)."""
    return read_cache(path or cache_dir() / FASTEST_FILE, dict[str, Fastest], FASTEST_KEY) or {}


def record_fastest(run: object, path: Path | None = None) -> Path:
    """Keep ``run``'s (a ``BenchRun``) fastest path per model in the cache, by batch size."""
    path = path or cache_dir() / FASTEST_FILE
    table = read_fastest(path)
    for model, row in run.fastest().items():
        table[f"{model}|{row.batch}"] = Fastest(
            row.backend,
            run.threads,
            row.median_ms,
            row.resolution,
            date.today().isoformat(),
            _machine(),
            run.busy,
        )
    write_cache(path, table, FASTEST_KEY)
    return path


def recommend(model: str, batch_sizes: tuple[int, ...] = (1, 32), path: Path | None = None) -> str:
    """One line per batch size: the fastest path measured here, else the reference one."""
    measured = read_fastest(path)
    machine = _machine()
    lines = []
    for batch in batch_sizes:
        row = measured.get(f"{model}|{batch}")
        if row is not None:
            where = "here" if row.machine == machine else f"on {display(row.machine)}"
            lines.append(
                f"fastest {where} for {model} at batch {batch}: {row.backend} "
                f"({row.median_ms:.2f} ms at {row.resolution} px, {row.threads} "
                f"threads; measured by `mobilenets bench` on {row.date})"
            )
        elif (model, batch) in REFERENCE_FASTEST:
            backend, threads, ms = REFERENCE_FASTEST[model, batch]
            lines.append(
                f"fastest for {model} at batch {batch} on {REFERENCE_MACHINE}: {backend} "
                f"({ms:.2f} ms at 224 px, {threads} threads); measure this machine with "
                f"`mobilenets bench --models {model} --batch-size {batch}`"
            )
    return "\n".join(lines)
