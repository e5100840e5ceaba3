"""Which format to ship a model in: the fastest path measured on this machine.

The winner differs by model and batch size (and by machine), so it is measured, not assumed:
``mobilenets bench`` records its fastest path per (model, batch size) in
``$MOBILENETS_CACHE/fastest.json``; ``export`` and ``quantize`` read it back and recommend. Where
this machine has no measurement yet they quote the reference one (:data:`REFERENCE_FASTEST`,
``benchmarks/results/threads``) and give the command that measures here.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import date
from pathlib import Path

from mobilenets.fileio import cache_dir, write_text_atomic

FASTEST_FILE = "fastest.json"
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


def _machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores"


def record_fastest(run: object, path: Path | None = None) -> Path:
    """Keep ``run``'s (a ``BenchRun``) fastest path per model in the cache, by batch size."""
    path = path or cache_dir() / FASTEST_FILE
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    for model, row in run.fastest().items():
        table[f"{model}|{row.batch}"] = {
            "backend": row.backend,
            "threads": run.threads,
            "median_ms": row.median_ms,
            "resolution": row.resolution,
            "date": date.today().isoformat(),
            "machine": _machine(),
            "untrusted": run.busy,
        }
    write_text_atomic(path, json.dumps(table, indent=1))
    return path


def recommend(model: str, batch_sizes: tuple[int, ...] = (1, 32), path: Path | None = None) -> str:
    """One line per batch size: the fastest path measured here, else the reference one."""
    path = path or cache_dir() / FASTEST_FILE
    try:
        measured = json.loads(path.read_text())
    except (OSError, ValueError):
        measured = {}
    lines = []
    for batch in batch_sizes:
        here = measured.get(f"{model}|{batch}")
        if here is not None:
            lines.append(
                f"fastest here for {model} at batch {batch}: {here['backend']} "
                f"({here['median_ms']:.2f} ms at {here['resolution']} px, {here['threads']} "
                f"threads; measured by `mobilenets bench` on {here['date']})"
            )
        elif (model, batch) in REFERENCE_FASTEST:
            backend, threads, ms = REFERENCE_FASTEST[model, batch]
            lines.append(
                f"fastest for {model} at batch {batch} on {REFERENCE_MACHINE}: {backend} "
                f"({ms:.2f} ms at 224 px, {threads} threads); measure this machine with "
                f"`mobilenets bench --models {model} --batch-size {batch}`"
            )
    return "\n".join(lines)
