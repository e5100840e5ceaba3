"""Latency of our models beside torchvision's (timm's for V1), per backend, in one run.

Backends: ``eager`` (PyTorch, NCHW), ``channels_last``, ``compile`` (torch.compile with
freezing; slow to start), ``ort`` (ONNX Runtime fp32, BN folded), ``ort_int8`` (static QDQ),
``executorch`` / ``executorch_int8`` (XNNPACK delegate; PT2E int8), ``openvino`` (fp32, set
explicitly: OpenVINO runs bf16 by default on CPUs that have it), ``openvino_bf16`` and
``openvino_int8`` (our QDQ model in OpenVINO). int8 models are calibrated on random inputs: fine
for timing, not for accuracy. The edge backends run our networks only.

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

import copy
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenets.complexity import profile
from mobilenets.complexity.latency import MachineLoad, spread, time_calls, time_interleaved
from mobilenets.errors import ConfigError
from mobilenets.export.choices import BACKENDS, DEFAULT_BACKENDS, DEFAULT_MODELS, OURS_ONLY
from mobilenets.export.folding import fold_bn
from mobilenets.export.isolate import TimingPlan, time_isolated
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


@dataclass
class Peaks:
    """The machine's compute roofs for this run: GFLOP/s of a large fp32 matmul per backend,
    and GOP/s of an int8 one (``None`` when no installed backend has one)."""

    fp32: dict[str, float]
    int8: float | None = None

    @property
    def best_fp32(self) -> float:
        return max(self.fp32.values())

    def roof(self, backend: str) -> float:
        """The roof a backend's rows are held to: int8 rows the faster of int8 and fp32."""
        if backend.endswith("_int8") and self.int8:
            return max(self.int8, self.best_fp32)
        return self.best_fp32

    def describe(self) -> str:
        fp32 = ", ".join(f"{k} {v:.0f}" for k, v in self.fp32.items())
        int8 = f"; int8 matmul {self.int8:.0f} GOP/s (onnxruntime)" if self.int8 else ""
        return f"fp32 matmul GFLOP/s: {fp32}{int8}"


def _best_seconds(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()
    return min(time_calls(fn, 0, repeats)) / 1000


def _onnx_matmul(size: int, int8: bool) -> bytes:
    from onnx import TensorProto, helper

    kind = TensorProto.UINT8 if int8 else TensorProto.FLOAT
    a = helper.make_tensor_value_info("a", kind, [size, size])
    b = helper.make_tensor_value_info("b", TensorProto.INT8 if int8 else kind, [size, size])
    out = helper.make_tensor_value_info("c", TensorProto.INT32 if int8 else kind, [size, size])
    node = helper.make_node("MatMulInteger" if int8 else "MatMul", ["a", "b"], ["c"])
    graph = helper.make_graph([node], "matmul", [a, b], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return model.SerializeToString()


def measure_peaks(threads: int, size: int = 1024) -> Peaks:
    """The best large-matmul throughput of each installed backend at ``threads`` threads."""
    flops = 2 * size**3
    a, b = torch.randn(size, size), torch.randn(size, size)
    peaks = {"torch.mm": flops / _best_seconds(lambda: torch.mm(a, b)) / 1e9}
    int8 = None
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        an, bn = a.numpy(), b.numpy()
        session = ort.InferenceSession(_onnx_matmul(size, False), options)
        peaks["onnxruntime"] = (
            flops / _best_seconds(lambda: session.run(None, {"a": an, "b": bn})) / 1e9
        )
        rng = np.random.default_rng(0)
        a8 = rng.integers(0, 255, (size, size), dtype=np.uint8)
        b8 = rng.integers(-127, 127, (size, size), dtype=np.int8)
        session8 = ort.InferenceSession(_onnx_matmul(size, True), options)
        int8 = flops / _best_seconds(lambda: session8.run(None, {"a": a8, "b": b8})) / 1e9
    except ImportError:
        pass
    try:
        import openvino as ov
        import openvino.opset13 as ops

        left = ops.parameter([size, size], np.float32)
        right = ops.parameter([size, size], np.float32)
        model = ov.Model([ops.matmul(left, right, False, False)], [left, right])
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
        compiled = ov.Core().compile_model(model, "CPU", config)
        an, bn = a.numpy(), b.numpy()
        peaks["openvino"] = flops / _best_seconds(lambda: compiled([an, bn])) / 1e9
    except ImportError:
        pass
    xnnpack = _xnnpack_matmul_gflops(a, threads)
    if xnnpack is not None:
        peaks["executorch (XNNPACK)"] = xnnpack
    return Peaks(peaks, int8)


def _xnnpack_matmul_gflops(a: torch.Tensor, threads: int) -> float | None:
    """XNNPACK's fp32 GEMM (a bias-free Linear, weights constant as in a network) through
    ExecuTorch, or ``None`` without the [edge] extra."""
    import importlib.util

    if importlib.util.find_spec("executorch") is None:
        return None
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    size = a.shape[0]
    linear = nn.Linear(size, size, bias=False).eval()
    program = to_edge_transform_and_lower(
        torch.export.export(linear, (a,)), partitioner=[XnnpackPartitioner()]
    ).to_executorch()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "matmul.pte"
        path.write_bytes(program.buffer)
        from executorch.runtime import Runtime

        from mobilenets.saved.edge import set_executorch_threads

        set_executorch_threads(threads)
        method = Runtime.get().load_program(str(path)).load_method("forward")
        return 2 * size**3 / _best_seconds(lambda: method.execute([a])) / 1e9


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


def _random_qdq(onnx_path: Path, int8_path: Path, shape: tuple[int, ...]) -> Path:
    """Our int8 QDQ model of an fp32 ONNX file, calibrated on random inputs (timing only)."""
    if not int8_path.exists():
        rng = np.random.default_rng(0)
        batches = iter([{"input": rng.standard_normal((4, *shape), np.float32)} for _ in range(4)])
        reader = type("Reader", (), {"get_next": staticmethod(lambda: next(batches, None))})()
        quantize_qdq(onnx_path, int8_path, reader, method="minmax")  # random data: no histogram
    return int8_path


def _edge_runner(
    model: nn.Module, backend: str, x: torch.Tensor, onnx_path: Path, threads: int
) -> Callable[[], object]:
    """ExecuTorch or OpenVINO: the network exported (int8: calibrated on random inputs)."""
    from mobilenets.export.edge import export_openvino, export_pte, network_record
    from mobilenets.saved.edge import OpenVinoModel, PteProgram

    workdir = onnx_path.parent
    if backend.startswith("executorch"):
        record = network_record(model, None, x.shape[-1])
        int8 = backend.endswith("_int8")
        calibration = [torch.randn(4, *x.shape[1:]) for _ in range(4)] if int8 else None
        path = workdir / f"{onnx_path.stem}.{backend}.pte"
        if not path.exists():  # isolated timing: a process before this one wrote it
            export_pte(model, path, record, calibration=calibration)
        program = PteProgram(path, threads)
        return lambda: program(x)
    if backend == "openvino_int8":
        onnx_path = _random_qdq(onnx_path, workdir / f"{onnx_path.stem}.int8.onnx", x.shape[1:])
    xml = workdir / f"{onnx_path.stem}.xml"
    if not xml.exists():
        export_openvino(onnx_path, xml)
    precision = "bf16" if backend == "openvino_bf16" else "fp32"
    network = OpenVinoModel(xml, precision, threads)
    return lambda: network(x)


def _runner(
    model: nn.Module, backend: str, x: torch.Tensor, workdir: Path, tag: str, threads: int
) -> Callable[[], object]:
    if backend == "eager":
        return lambda: model(x)
    if backend == "channels_last":  # a copy: .to(memory_format) changes a module in place
        cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        cl_x = x.contiguous(memory_format=torch.channels_last)
        return lambda: cl_model(cl_x)
    if backend == "compile":
        torch._inductor.config.freezing = True
        compiled = torch.compile(copy.deepcopy(model).to(memory_format=torch.channels_last))
        cl_x = x.contiguous(memory_format=torch.channels_last)
        return lambda: compiled(cl_x)
    onnx_path = workdir / f"{tag}.onnx"
    if not onnx_path.exists():  # the first of the exported backends of this network
        export_onnx(fold_bn(model), onnx_path, x.shape[-1])
    if backend in OURS_ONLY:
        return _edge_runner(fold_bn(model), backend, x, onnx_path, threads)
    if backend == "ort_int8":
        onnx_path = _random_qdq(onnx_path, workdir / f"{tag}.int8.onnx", x.shape[1:])
    session = OnnxSession(onnx_path, threads=threads)
    array = x.numpy()
    return lambda: session(array)


def missing_package(backend: str) -> str | None:
    """The package a backend needs and this machine lacks, if any."""
    import importlib.util

    needs = {"ort": "onnxruntime", "executorch": "executorch", "openvino": "openvino"}
    package = next((p for prefix, p in needs.items() if backend.startswith(prefix)), None)
    return package if package and importlib.util.find_spec(package) is None else None


#: Other processes' CPU use (cores) above which a run's figures are flagged as untrustworthy.
BUSY_CORES = 0.25
#: A row whose p10–p90 range exceeds this share of its median is flagged.
WIDE_SPREAD = 0.25


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
    models: Sequence[str], backends: Sequence[str], references: bool, resolution: int
) -> list[tuple[str, str, nn.Module, str, int]]:
    """(model, source, network, backend, MACs) for every row to time."""
    configs = []
    for name in models:
        ours = create_model(name).eval()
        macs = profile(ours, resolution).macs
        candidates = [("mobilenets", ours)]
        ref = reference_model(name) if references else None
        if ref is not None:
            candidates.append(ref)
        for source, model in candidates:
            for backend in backends:
                if source == "mobilenets" or backend not in OURS_ONLY:
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
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:  # the caller's thread count is restored: later work must not run at bench's
        plan = TimingPlan(batch_size, resolution, threads, warmup, runs)
        isolate = threads > 1 if isolate is None else isolate
        peaks, times, load, meta = _measure(models, backends, references, plan, isolate, log)
    finally:
        torch.set_num_threads(before)
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
    configs = _configurations(models, backends, references, plan.resolution)
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
        calls[name, source, backend] = _runner(
            model, backend, x, workdir, f"{name}-{source}", plan.threads
        )
    log(f"timing {len(calls)} configurations interleaved, {plan.runs} rounds ...")
    with MachineLoad() as load:
        times = time_interleaved(calls, plan.warmup, plan.runs)
    return times, load


def format_bench(run: BenchRun) -> str:
    """A markdown table of the rows, the roofs, the machine's other load, the fastest paths."""
    rows = run.rows
    first = rows[0] if rows else None
    lines = [
        f"Latency, batch {first.batch if first else '?'}, {first.resolution if first else '?'} "
        f"px, {run.threads} threads ({os.cpu_count()} cores); {run.peaks.describe()}",
        "",
    ]
    if run.other_cores is not None:
        load = f"other processes used {run.other_cores:.2f} cores while timing"
        lines += [
            f"⚠ {load}: the figures are not to be trusted; re-run on a quiet machine"
            if run.busy
            else f"{load} (quiet)",
            "",
        ]
    lines += [
        "| model | source | backend | median ms | p10–p90 ms | img/s | × vs reference eager | "
        "× roofline bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    wide = 0
    for r in rows:
        speed = f"{r.speedup_vs_reference_eager:.2f}" if r.speedup_vs_reference_eager else "–"
        flag = " ⚠" if r.p90_ms - r.p10_ms > WIDE_SPREAD * r.median_ms else ""
        wide += bool(flag)
        lines.append(
            f"| {r.model} | {r.source} | {r.backend} | {r.median_ms:.2f} | {r.p10_ms:.2f}–"
            f"{r.p90_ms:.2f}{flag} | {r.images_per_s:.1f} | {speed} | {r.vs_roofline:.2f} |"
        )
    if wide:
        lines += [
            "",
            f"⚠ {wide} of {len(rows)} rows spread wider than {WIDE_SPREAD:.0%} of their median "
            "(p10–p90): their medians are not to be trusted; re-run on a quiet machine.",
        ]
    lines += ["", "Fastest path per model (ours):", ""]
    lines += [f"- {m}: {r.backend} {r.median_ms:.2f} ms" for m, r in run.fastest().items()]
    lines += [f"- skipped {line}" for line in run.skipped]
    lines.append("")
    how = (
        "Each configuration timed alone in a fresh process (2 rounds, rotating order): above "
        "one thread, runtimes in one process slow each other with their spinning thread pools."
        if run.isolated
        else "Timed interleaved in one process (every configuration once per round, rotating "
        "order)."
    )
    lines.append(
        f"{how} roofline bound "
        "= 2·MACs·batch / roof (the best fp32 matmul of any backend; int8 rows: the faster of "
        "that and the int8 matmul); × roofline = median / bound (1.0 is the bound); × vs "
        "reference eager = the reference library's eager median / ours."
    )
    return "\n".join(lines) + "\n"


def write_bench(out: str | Path, run: BenchRun) -> Path:
    """``bench.md``, ``bench.csv``, ``bench.json`` and ``bench.png`` (grouped bars) in ``out``."""
    rows = run.rows
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "bench.md", format_bench(run))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(rows[0])))
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    write_text_atomic(out / "bench.csv", buffer.getvalue())
    payload = {
        "peaks": asdict(run.peaks),
        "threads": run.threads,
        "other_cores": run.other_cores,
        "skipped": run.skipped,
        "isolated": run.isolated,
        "rows": [asdict(r) for r in rows],
    }
    write_text_atomic(out / "bench.json", json.dumps(payload, indent=2))
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
        Line2D([], [], color="red", linestyle="--", label="fp32 roofline bound"),
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
