"""Latency of our models beside torchvision's (timm's for V1), per backend, in one run.

Every backend is prepared and called through :mod:`mobilenets.export.runtimes` (which lists
them); the edge backends run our networks only. The report (table, CSV, JSON, picture) is
:mod:`mobilenets.export.bench_report`.

At 1 thread every configuration is built first, then all are timed *interleaved* (each round
visits them in a rotated order, each timed call right after an untimed one), so load on the
machine falls on all alike. Above 1 thread (every core is the default: the fastest setting at
batch 1 here, ``benchmarks/threads.py``) each configuration is timed alone in a fresh process
(:mod:`mobilenets.export.isolate`), because runtimes sharing a process slow each other's threads.
Each figure is a median over ``runs`` calls with the 10th–90th percentile spread. The
CPU time the machine's other processes take meanwhile is measured, and the table warns when it
is large enough to distort the figures. The roofline's compute roof is the best fp32 matmul any
installed backend reaches in the same run at the same thread count (torch.mm, ONNX Runtime,
OpenVINO), and for int8 rows the best int8 matmul (ONNX Runtime's MatMulInteger) when it is
faster.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mobilenets.complexity import profile
from mobilenets.complexity.latency import spread, time_interleaved
from mobilenets.cpu import MachineLoad
from mobilenets.errors import ConfigError
from mobilenets.export.choices import BACKENDS, DEFAULT_BACKENDS, DEFAULT_MODELS, OURS_ONLY
from mobilenets.export.isolate import TimingPlan, time_isolated
from mobilenets.export.references import reference_model
from mobilenets.export.runtimes import (
    DETECTOR_BACKENDS,
    Peaks,
    is_detector,
    measure_peaks,
    missing_package,
    prepare,
    torch_threads,
)
from mobilenets.models.registry import create_model

#: PyTorch's own backends: the ones torchvision's detectors are timed on (they export no file).
TORCH_BACKENDS = ("eager", "channels_last")


@dataclass
class BenchRow:
    model: str
    source: str  # "mobilenets", "torchvision" or "timm"
    backend: str
    batch: int
    resolution: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    images_per_s: float
    macs: int
    roofline_ms: float
    vs_roofline: float = 0.0  # median / roofline bound
    speedup_vs_reference_eager: float = 0.0


#: Other processes' CPU use (cores) above which a run's figures are flagged as untrustworthy.
BUSY_CORES = 0.25


@dataclass
class BenchRun:
    """One ``bench`` run: the rows, the roofs they are held to, and the machine's other load."""

    rows: list[BenchRow]
    peaks: Peaks
    threads: int
    other_cores: float | None  # CPU the machine's other processes used while timing
    skipped: list[str]  # "backend: why" for backends that could not run here
    isolated: bool = False  # each configuration timed alone in a fresh process

    @property
    def busy(self) -> bool:
        return self.other_cores is not None and self.other_cores > BUSY_CORES

    def fastest(self) -> dict[str, BenchRow]:
        """Our fastest row per model."""
        best: dict[str, BenchRow] = {}
        for row in self.rows:
            if row.source == "mobilenets" and (
                row.model not in best or row.median_ms < best[row.model].median_ms
            ):
                best[row.model] = row
        return best


def _configurations(
    models: Sequence[str],
    backends: Sequence[str],
    references: bool,
    resolution: int,
    log: Callable[[str], None] = print,
) -> list[tuple[str, str, nn.Module, str, int]]:
    """(model, source, network, backend, MACs) for every row to time. A detector is timed end
    to end (resize, network, decoding, NMS) on :data:`DETECTOR_BACKENDS`."""
    configs = []
    for name in models:
        ours = create_model(name).eval()
        macs = profile(ours, resolution).macs
        candidates = [("mobilenets", ours)]
        ref = reference_model(name) if references else None
        if ref is not None:
            candidates.append(ref)
        usable = list(backends)
        if is_detector(ours):
            usable = [b for b in backends if b in DETECTOR_BACKENDS]
            for backend in sorted(set(backends) - set(usable)):
                log(f"skipped {name} on {backend}: detectors are timed on {DETECTOR_BACKENDS}")
        for source, model in candidates:
            for backend in usable:
                theirs_too = (
                    backend in TORCH_BACKENDS if is_detector(ours) else backend not in OURS_ONLY
                )
                if source == "mobilenets" or theirs_too:  # their detectors: eager PyTorch only
                    configs.append((name, source, model, backend, macs))
    return configs


@torch.inference_mode()
def run_bench(
    models: Sequence[str] = DEFAULT_MODELS,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    *,
    batch_size: int = 1,
    resolution: int = 224,
    threads: int | None = None,
    warmup: int = 10,
    runs: int = 50,
    references: bool = True,
    isolate: bool | None = None,
    log: Callable[[str], None] = print,
) -> BenchRun:
    """Build every (model, source, backend), then time them all: interleaved in this process
    at 1 thread, each alone in a fresh process above that (``isolate``'s default; see
    :mod:`mobilenets.export.isolate`). The roofs are measured in the same run at the same
    thread count."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backends {unknown}; allowed: {', '.join(BACKENDS)}")
    missing = {b: missing_package(b) for b in backends}
    skipped = [f"{b}: needs {package}" for b, package in missing.items() if package]
    for line in skipped:
        log(f"skipped {line} (not installed)")
    backends = [b for b in backends if not missing[b]]
    threads = threads or torch.get_num_threads()
    with torch_threads(threads):  # the caller's count is restored after
        plan = TimingPlan(batch_size, resolution, threads, warmup, runs)
        isolate = threads > 1 if isolate is None else isolate
        peaks, times, load, meta = _measure(models, backends, references, plan, isolate, log)
    rows = _rows(times, meta, peaks, batch_size, resolution)
    return BenchRun(rows, peaks, threads, load.other_cores, skipped, isolate)


def _measure(
    models: Sequence[str],
    backends: Sequence[str],
    references: bool,
    plan: TimingPlan,
    isolate: bool,
    log: Callable[[str], None],
) -> tuple[Peaks, dict, MachineLoad, dict]:
    """The roofs, then every configuration timed (see :func:`run_bench`)."""
    peaks = measure_peaks(plan.threads)
    log(f"{peaks.describe()} on {plan.threads} threads")
    configs = _configurations(models, backends, references, plan.resolution, log)
    meta = {(name, source, backend): macs for name, source, _, backend, macs in configs}
    with tempfile.TemporaryDirectory() as tmp:
        if isolate:
            log(f"timing {len(configs)} configurations, each alone in a fresh process ...")
            with MachineLoad() as load:
                times = time_isolated(list(meta), plan, Path(tmp), log=log)
        else:
            times, load = _time_in_process(configs, plan, Path(tmp), log)
    return peaks, times, load, meta


def _rows(
    times: dict, meta: dict, peaks: Peaks, batch_size: int, resolution: int
) -> list[BenchRow]:
    """One row per configuration: its spread, throughput, roofline ratio and the ratio to its
    reference's eager time."""
    rows = []
    for (name, source, backend), values in times.items():
        median, p10, p90 = spread(values)
        macs = meta[name, source, backend]
        bound = 2 * macs * batch_size / (peaks.roof(backend) * 1e9) * 1000
        rows.append(
            BenchRow(
                name,
                source,
                backend,
                batch_size,
                resolution,
                median,
                p10,
                p90,
                1000 * batch_size / median,
                macs,
                bound,
                median / bound,
            )
        )
    for row in rows:
        ref_eager = next(
            (
                r
                for r in rows
                if r.model == row.model and r.source != "mobilenets" and r.backend == "eager"
            ),
            None,
        )
        if ref_eager is not None:
            row.speedup_vs_reference_eager = ref_eager.median_ms / row.median_ms
    return rows


def _time_in_process(
    configs: list, plan: TimingPlan, workdir: Path, log: Callable[[str], None]
) -> tuple[dict, MachineLoad]:
    """Every configuration prepared in this process, then all timed interleaved."""
    x = torch.randn(plan.batch_size, 3, plan.resolution, plan.resolution)
    calls = {}
    for name, source, model, backend, _ in configs:
        log(f"preparing {name} ({source}) {backend} ...")
        calls[name, source, backend] = prepare(
            model, backend, x, workdir=workdir, tag=f"{name}-{source}", threads=plan.threads
        )
    log(f"timing {len(calls)} configurations interleaved, {plan.runs} rounds ...")
    with MachineLoad() as load:
        times = time_interleaved(calls, plan.warmup, plan.runs)
    return times, load
