"""One runtime interface for every backend: a network prepared once, then called.

:func:`prepare` builds a backend's runner for a network and an example input (exporting it to
ONNX, ExecuTorch or OpenVINO IR first where the backend needs a file) and returns a call with no
arguments that runs the network on that input: what ``bench`` times (in its process and in each
isolated child), what NetAdapt's latency table times per layer, what the sweep's latency phase
times, and what ``benchmarks/threads.py`` times. Saved files are read back, with every output
named as exported, by :mod:`mobilenets.saved` (``load``).

Also here: :func:`torch_threads`, the one context that sets torch's thread count and restores
it, and :func:`measure_peaks`, one large-matmul probe per backend (the roofline's roof).

Backends: ``eager`` (PyTorch, NCHW), ``channels_last``, ``compile`` (torch.compile with freezing;
slow to start), ``ort`` (ONNX Runtime fp32, BN folded), ``ort_int8`` (static QDQ),
``executorch``/``executorch_int8`` (XNNPACK; PT2E int8), ``openvino`` (fp32 set explicitly),
``openvino_bf16`` and ``openvino_int8`` (our QDQ model in OpenVINO). int8 models here are
calibrated on random inputs: right for timing, not for accuracy (that is ``quantize``'s).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenets.complexity.latency import time_calls
from mobilenets.export.folding import fold_bn
from mobilenets.export.onnx import export_onnx
from mobilenets.export.quantize import quantize_qdq

#: The package each family of backends needs (a missing one is skipped with one line).
PACKAGES = {"ort": "onnxruntime", "executorch": "executorch", "openvino": "openvino"}


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` (unchanged when ``None``) for a block,
    and the caller's restored after it: later work must not run at a benchmark's setting."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def missing_package(backend: str) -> str | None:
    """The package a backend needs and this machine lacks, if any."""
    package = next((p for prefix, p in PACKAGES.items() if backend.startswith(prefix)), None)
    return package if package and importlib.util.find_spec(package) is None else None


def prepare(
    model: nn.Module,
    backend: str,
    x: torch.Tensor,
    *,
    workdir: Path | None = None,
    tag: str = "model",
    threads: int | None = None,
    dynamic_batch: bool = True,
    spinning: bool = True,
) -> Callable[[], object]:
    """A call with no arguments running ``model`` on ``x`` with ``backend`` at ``threads``
    (``OMP_NUM_THREADS``'s or every core when ``None``; torch's own backends run at torch's
    setting, see :func:`torch_threads`).

    Files a backend needs are written to ``workdir`` as ``{tag}.onnx``, ``{tag}.int8.onnx``,
    ``{tag}.{backend}.pte``, ``{tag}.xml``, and reused when there (an isolated timing process
    finds what the one before it exported). ``dynamic_batch`` is the ONNX export's;
    ``spinning`` ONNX Runtime's workers' (see :class:`~mobilenets.saved.onnx.OnnxSession`)."""
    model = model.eval()
    if is_detector(model):
        return _detector_call(model, backend, x, workdir, tag, threads or os.cpu_count() or 1)
    if backend in ("eager", "channels_last", "compile"):
        return _torch_call(model, backend, x)
    if workdir is None:
        raise ValueError(f"the {backend} backend runs an exported file: give a workdir")
    threads = threads or os.cpu_count() or 1
    if backend.startswith("executorch"):
        return _executorch_call(fold_bn(model), backend, x, workdir / tag, threads)
    onnx_path = workdir / f"{tag}.onnx"
    if not onnx_path.exists():  # the first of the ONNX-based backends of this network
        export_onnx(fold_bn(model), onnx_path, example=x, dynamic_batch=dynamic_batch)
    if backend.endswith("_int8"):
        onnx_path = random_qdq(onnx_path, workdir / f"{tag}.int8.onnx", x)
    if backend.startswith("openvino"):
        return _openvino_call(onnx_path, backend, x, threads)
    from mobilenets.saved.onnx import OnnxSession

    session = OnnxSession(onnx_path, threads=threads, spinning=spinning)
    array = x.numpy()
    return lambda: session(array)


def _torch_call(model: nn.Module, backend: str, x: torch.Tensor) -> Callable[[], object]:
    if backend == "channels_last":  # a copy: .to(memory_format) changes a module in place
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    elif backend == "compile":
        torch._inductor.config.freezing = True
        model = torch.compile(copy.deepcopy(model).to(memory_format=torch.channels_last))
        x = x.contiguous(memory_format=torch.channels_last)

    def call() -> object:
        with torch.inference_mode():
            return model(x)

    return call


def _executorch_call(
    model: nn.Module, backend: str, x: torch.Tensor, stem: Path, threads: int
) -> Callable[[], object]:
    """ExecuTorch (XNNPACK): our network exported batch 1 (int8: calibrated on random inputs)."""
    from mobilenets.export.edge import export_pte, network_record
    from mobilenets.saved.edge import PteProgram

    path = stem.with_name(f"{stem.name}.{backend}.pte")
    if not path.exists():
        int8 = backend.endswith("_int8")
        calibration = [torch.randn(4, *x.shape[1:]) for _ in range(4)] if int8 else None
        export_pte(model, path, network_record(model, None, x.shape[-1]), calibration=calibration)
    program = PteProgram(path, threads)
    return lambda: program(x)


#: The backends a detector is timed on end to end (int8 detectors need real calibration images:
#: ``mobilenets quantize --calib-data``, with the prediction layers kept fp32).
DETECTOR_BACKENDS = ("eager", "channels_last", "ort", "executorch", "openvino", "openvino_bf16")


def is_detector(model: nn.Module) -> bool:
    """Ours (``task == "detection"``) or torchvision's SSD: timed end to end on images."""
    from torchvision.models.detection.ssd import SSD

    return getattr(model, "task", "") == "detection" or isinstance(model, SSD)


def _detector_call(
    detector: nn.Module, backend: str, x: torch.Tensor, workdir: Path | None, tag: str, threads: int
) -> Callable[[], object]:
    """A detector end to end on the batch's images (values in [0, 1]): its resize and
    normalisation, the network on ``backend``, its decoding and NMS. Exported backends run the
    file ``export`` writes (the network only) inside the detector's own pre- and
    post-processing, as ``mobilenets.load`` does (:class:`ExportedDetector`)."""
    from mobilenets.models.detection import DetectorGraph, ExportedDetector

    if backend not in DETECTOR_BACKENDS:
        raise ValueError(f"a detector is not timed on {backend}: {', '.join(DETECTOR_BACKENDS)}")
    images = list(torch.rand(x.shape, generator=torch.Generator().manual_seed(0)))
    if backend in ("eager", "channels_last"):
        if backend == "channels_last":
            detector = copy.deepcopy(detector).to(memory_format=torch.channels_last)
        network = detector
    else:
        if workdir is None:
            raise ValueError(f"the {backend} backend runs an exported file: give a workdir")
        graph = fold_bn(DetectorGraph(detector).eval())
        size = detector.image_size
        example = torch.randn(1, detector.in_chans, size, size)
        if backend == "executorch":
            from mobilenets.export.edge import export_pte, network_record
            from mobilenets.saved.edge import PteProgram

            path = workdir / f"{tag}.executorch.pte"
            if not path.exists():
                export_pte(graph, path, network_record(graph, None, size))
            runtime = PteProgram(path, threads)
        else:
            onnx_path = workdir / f"{tag}.onnx"
            if not onnx_path.exists():
                export_onnx(graph, onnx_path, example=example, dynamic_batch=True)
            if backend == "ort":
                from mobilenets.saved.onnx import OnnxModule, OnnxSession

                runtime = OnnxModule(OnnxSession(onnx_path, threads=threads))
            else:
                from mobilenets.export.edge import export_openvino
                from mobilenets.saved.edge import OpenVinoModel

                xml = onnx_path.with_suffix(".xml")
                if not xml.exists():
                    export_openvino(onnx_path, xml)
                precision = "bf16" if backend == "openvino_bf16" else "fp32"
                runtime = OpenVinoModel(xml, precision, threads)
        network = ExportedDetector(runtime, copy.deepcopy(detector)).eval()
    if backend == "channels_last":
        images = [image.contiguous(memory_format=torch.channels_last) for image in images]

    def call() -> object:
        with torch.inference_mode():
            return network(images)

    return call


def _openvino_call(
    onnx_path: Path, backend: str, x: torch.Tensor, threads: int
) -> Callable[[], object]:
    """OpenVINO: the IR of one of our ONNX files (fp32, bf16, or the int8 QDQ model)."""
    from mobilenets.export.edge import export_openvino
    from mobilenets.saved.edge import OpenVinoModel

    xml = onnx_path.with_suffix(".xml")
    if not xml.exists():
        export_openvino(onnx_path, xml)
    network = OpenVinoModel(xml, "bf16" if backend == "openvino_bf16" else "fp32", threads)
    return lambda: network(x)


def random_qdq(onnx_path: Path, int8_path: Path, x: torch.Tensor) -> Path:
    """Our int8 QDQ model of an fp32 ONNX file, calibrated on random inputs (timing only)."""
    if not int8_path.exists():
        rng = np.random.default_rng(0)
        shape = tuple(x.shape[1:])
        batches = iter([{"input": rng.standard_normal((4, *shape), np.float32)} for _ in range(4)])
        reader = type("Reader", (), {"get_next": staticmethod(lambda: next(batches, None))})()
        quantize_qdq(onnx_path, int8_path, reader, method="minmax")  # random data: no histogram
    return int8_path


# --- the roofs: one large-matmul probe per backend ------------------------------------------


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


def _ort_peaks(a: torch.Tensor, b: torch.Tensor, threads: int) -> tuple[float, float]:
    """ONNX Runtime's fp32 MatMul (GFLOP/s) and int8 MatMulInteger (GOP/s)."""
    import onnxruntime as ort

    size = a.shape[0]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    an, bn = a.numpy(), b.numpy()
    session = ort.InferenceSession(_onnx_matmul(size, False), options)
    fp32 = 2 * size**3 / _best_seconds(lambda: session.run(None, {"a": an, "b": bn})) / 1e9
    rng = np.random.default_rng(0)
    a8 = rng.integers(0, 255, (size, size), dtype=np.uint8)
    b8 = rng.integers(-127, 127, (size, size), dtype=np.int8)
    session8 = ort.InferenceSession(_onnx_matmul(size, True), options)
    int8 = 2 * size**3 / _best_seconds(lambda: session8.run(None, {"a": a8, "b": b8})) / 1e9
    return fp32, int8


def _openvino_peak(a: torch.Tensor, b: torch.Tensor, threads: int) -> float:
    import openvino as ov
    import openvino.opset13 as ops

    size = a.shape[0]
    left = ops.parameter([size, size], np.float32)
    right = ops.parameter([size, size], np.float32)
    model = ov.Model([ops.matmul(left, right, False, False)], [left, right])
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    compiled = ov.Core().compile_model(model, "CPU", config)
    an, bn = a.numpy(), b.numpy()
    return 2 * size**3 / _best_seconds(lambda: compiled([an, bn])) / 1e9


def _xnnpack_peak(a: torch.Tensor, threads: int) -> float:
    """XNNPACK's fp32 GEMM (a bias-free Linear, weights constant as in a network) through
    ExecuTorch."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from mobilenets.saved.edge import set_executorch_threads

    size = a.shape[0]
    linear = nn.Linear(size, size, bias=False).eval()
    program = to_edge_transform_and_lower(
        torch.export.export(linear, (a,)), partitioner=[XnnpackPartitioner()]
    ).to_executorch()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "matmul.pte"
        path.write_bytes(program.buffer)
        set_executorch_threads(threads)
        method = Runtime.get().load_program(str(path)).load_method("forward")
        return 2 * size**3 / _best_seconds(lambda: method.execute([a])) / 1e9


def measure_peaks(threads: int, size: int = 1024) -> Peaks:
    """The best large-matmul throughput of each installed backend at ``threads`` threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    with torch_threads(threads):
        peaks = {"torch.mm": 2 * size**3 / _best_seconds(lambda: torch.mm(a, b)) / 1e9}
    int8 = None
    if missing_package("ort") is None:
        peaks["onnxruntime"], int8 = _ort_peaks(a, b, threads)
    if missing_package("openvino") is None:
        peaks["openvino"] = _openvino_peak(a, b, threads)
    if missing_package("executorch") is None:
        peaks["executorch (XNNPACK)"] = _xnnpack_peak(a, threads)
    return Peaks(peaks, int8)
