"""Latency of our models beside torchvision's (timm's for V1), per backend, in one run.

Backends: ``eager`` (PyTorch, NCHW), ``channels_last``, ``compile`` (torch.compile with
freezing; slow to start), ``ort`` (ONNX Runtime fp32, BN folded) and ``ort_int8`` (static QDQ;
calibrated on random inputs: fine for timing, not for accuracy). Every figure is a median over
``runs`` timed calls after ``warmup`` calls, with the 10th–90th percentile spread, images/s, the
ratio to torchvision eager and the ratio to the machine's roofline bound: 2·MACs·batch divided by
the peak GFLOP/s of a large matmul measured at the start of the run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenets.complexity import profile
from mobilenets.complexity.latency import time_calls
from mobilenets.errors import ConfigError
from mobilenets.export.choices import BACKENDS, DEFAULT_BACKENDS, DEFAULT_MODELS
from mobilenets.export.folding import fold_bn
from mobilenets.export.onnx import export_onnx
from mobilenets.export.quantize import quantize_qdq
from mobilenets.fileio import new_figure, save_figure, write_text_atomic
from mobilenets.models.registry import create_model
from mobilenets.saved.onnx import OnnxSession

REFERENCES = {  # our name -> (library, their name)
    "mobilenet_v1": ("timm", "mobilenetv1_100"),
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "mobilenet_v3_large": ("torchvision", "mobilenet_v3_large"),
    "mobilenet_v3_small": ("torchvision", "mobilenet_v3_small"),
}


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


def peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul GFLOP/s of this machine (the roofline's compute roof)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def reference_model(name: str) -> tuple[str, nn.Module] | None:
    """torchvision's (or timm's, for V1) counterpart, or None when the library is missing."""
    library, theirs = REFERENCES[name]
    try:
        if library == "torchvision":
            import torchvision

            return library, getattr(torchvision.models, theirs)().eval()
        import timm

        return library, timm.create_model(theirs).eval()
    except ImportError:
        return None


def _runner(
    model: nn.Module, backend: str, x: torch.Tensor, workdir: Path, tag: str, threads: int
) -> Callable[[], object]:
    if backend == "eager":
        return lambda: model(x)
    if backend == "channels_last":
        cl_model = model.to(memory_format=torch.channels_last)
        cl_x = x.contiguous(memory_format=torch.channels_last)
        return lambda: cl_model(cl_x)
    if backend == "compile":
        torch._inductor.config.freezing = True
        compiled = torch.compile(model.to(memory_format=torch.channels_last))
        cl_x = x.contiguous(memory_format=torch.channels_last)
        return lambda: compiled(cl_x)
    onnx_path = workdir / f"{tag}.onnx"
    if not onnx_path.exists():
        export_onnx(fold_bn(model), onnx_path, x.shape[-1])
    if backend == "ort_int8":
        int8_path = workdir / f"{tag}.int8.onnx"
        rng = np.random.default_rng(0)
        batches = iter(
            [{"input": rng.standard_normal((4, *x.shape[1:]), np.float32)} for _ in range(4)]
        )
        quantize_qdq(
            onnx_path,
            int8_path,
            type("Reader", (), {"get_next": staticmethod(lambda: next(batches, None))})(),
        )
        onnx_path = int8_path
    session = OnnxSession(onnx_path, threads=threads)
    array = x.numpy()
    return lambda: session(array)


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
    log: Callable[[str], None] = print,
) -> tuple[list[BenchRow], float]:
    """Measure every (model, source, backend); returns the rows and the measured peak GFLOP/s."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backends {unknown}; allowed: {', '.join(BACKENDS)}")
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    peak = peak_gflops()
    log(f"peak fp32 matmul: {peak:.0f} GFLOP/s on {threads} threads")
    rows: list[BenchRow] = []
    x = torch.randn(batch_size, 3, resolution, resolution)
    # Warm the machine up (clocks, allocator, thread pool) so the first configuration timed,
    # always ours, is not penalised: seen here as +20% on the first row without it.
    warm = create_model(models[0]).eval()
    deadline = time.perf_counter() + 2.0
    while time.perf_counter() < deadline:
        warm(x)
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            ours = create_model(name).eval()
            macs = profile(ours, resolution).macs
            bound = 2 * macs * batch_size / (peak * 1e9) * 1000
            candidates = [("mobilenets", ours)]
            ref = reference_model(name) if references else None
            if ref is not None:
                candidates.append(ref)
            for source, model in candidates:
                for backend in backends:
                    log(f"{name} ({source}) {backend} ...")
                    fn = _runner(model, backend, x, Path(tmp), f"{name}-{source}", threads)
                    times = time_calls(fn, warmup, runs)
                    median = statistics.median(times)
                    rows.append(
                        BenchRow(
                            name,
                            source,
                            backend,
                            batch_size,
                            resolution,
                            median,
                            float(np.percentile(times, 10)),
                            float(np.percentile(times, 90)),
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
    return rows, peak


def format_bench(rows: list[BenchRow], peak: float) -> str:
    """A markdown table of the rows."""
    first = rows[0] if rows else None
    lines = [
        f"Latency, batch {first.batch if first else '?'}, {first.resolution if first else '?'} "
        f"px, {torch.get_num_threads()} threads; peak matmul {peak:.0f} GFLOP/s "
        f"({os.cpu_count()} cores)",
        "",
        "| model | source | backend | median ms | p10–p90 ms | img/s | × vs reference eager | "
        "× roofline bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speed = f"{r.speedup_vs_reference_eager:.2f}" if r.speedup_vs_reference_eager else "–"
        lines.append(
            f"| {r.model} | {r.source} | {r.backend} | {r.median_ms:.2f} | {r.p10_ms:.2f}–"
            f"{r.p90_ms:.2f} | {r.images_per_s:.1f} | {speed} | {r.vs_roofline:.2f} |"
        )
    lines.append("")
    lines.append(
        "roofline bound = 2·MACs·batch / peak; × roofline = median / bound (1.0 is the "
        "bound); × vs reference eager = the reference library's eager median / ours."
    )
    return "\n".join(lines) + "\n"


def write_bench(out: str | Path, rows: list[BenchRow], peak: float) -> Path:
    """``bench.md``, ``bench.csv``, ``bench.json`` and ``bench.png`` (grouped bars) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "bench.md", format_bench(rows, peak))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(rows[0])))
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    write_text_atomic(out / "bench.csv", buffer.getvalue())
    write_text_atomic(
        out / "bench.json",
        json.dumps({"peak_gflops": peak, "rows": [asdict(r) for r in rows]}, indent=2),
    )
    plot_bench(out / "bench.png", rows)
    return out


def plot_bench(path: Path, rows: list[BenchRow]) -> None:
    """Grouped bars: per model, one bar per backend, ours plain and the reference hatched."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    models = list(dict.fromkeys(r.model for r in rows))
    series = list(dict.fromkeys((r.source, r.backend) for r in rows))
    backends = list(dict.fromkeys(r.backend for r in rows))
    by_key = {(r.model, r.source, r.backend): r for r in rows}
    width = 0.8 / len(series)
    colors = colormaps["tab10"]
    fig = new_figure(figsize=(max(8, 2.6 * len(models)), 5))
    ax = fig.subplots()
    for s, (source, backend) in enumerate(series):
        xs, heights = [], []
        for m, model in enumerate(models):
            row = by_key.get((model, source, backend))
            if row is not None:
                xs.append(m + (s - (len(series) - 1) / 2) * width)
                heights.append(row.median_ms)
        hatch = "" if source == "mobilenets" else "//"
        ax.bar(
            xs,
            heights,
            width,
            color=colors(backends.index(backend)),
            hatch=hatch,
            edgecolor="black",
            linewidth=0.4,
        )
    for m, model in enumerate(models):
        bound = next(r.roofline_ms for r in rows if r.model == model)
        ax.hlines(bound, m - 0.45, m + 0.45, colors="red", linestyles="--")
    handles = [
        Patch(facecolor=colors(i), edgecolor="black", label=b) for i, b in enumerate(backends)
    ]
    handles += [
        Patch(facecolor="white", edgecolor="black", label="mobilenets"),
        Patch(facecolor="white", edgecolor="black", hatch="//", label="torchvision (timm: V1)"),
        Line2D([], [], color="red", linestyle="--", label="roofline bound"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("median latency (ms, lower is better)")
    first = rows[0]
    ax.set_title(
        f"batch {first.batch}, {first.resolution} px: ours (plain) beside the "
        "reference library (hatched)"
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
