"""Where ONNX Runtime's int8 time goes on MobileNetV3, and what changing our QDQ graph buys.

    python benchmarks/int8_profile.py [--models mobilenet_v3_small,mobilenet_v3_large]
                                      [--runs 200] [--out benchmarks/results/int8_profile.md]

For each model (BN folded, 224 px, batch 1, 1 thread): ONNX Runtime's profiler on the fp32 model
and on our int8 QDQ model (``quantize_qdq``, calibrated on random inputs: timing only), kernel
time grouped by what it computes (1×1 and stem convs, depthwise convs, squeeze-excite,
hard-swish, Q/DQ, the rest); then the int8 variants a fix could take, timed interleaved beside
fp32 and ours:

- ``hardswish as HardSwish``: no graph optimization before quantizing, so hard-swish stays one
  fp32 ``HardSwish`` between DQ and Q instead of ``HardSigmoid`` + ``QLinearMul``;
- ``SE in fp32``, ``depthwise in fp32``: those nodes excluded from quantization
  (``--keep-fp32``'s mechanism).
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

MODELS = ("mobilenet_v3_small", "mobilenet_v3_large")


def group(node: str, op: str) -> str:
    if "/se/" in node:
        return "squeeze-excite"
    if op in ("QuantizeLinear", "DequantizeLinear"):
        return "Q/DQ"
    if op in ("HardSigmoid", "QLinearMul", "Mul", "HardSwish"):
        return "hard-swish"
    if "depthwise" in node:
        return "depthwise conv"
    if op in ("Conv", "QLinearConv", "FusedConv"):
        return "1×1 and stem conv"
    return "the rest (pool, FC, reorders, add)"


def session(path: Path, profile_prefix: str | None = None) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def profile_groups(path: Path, x: np.ndarray, runs: int, prefix: str) -> dict[str, float]:
    """Kernel ms per call, per group, from ONNX Runtime's profiler."""
    s = session(path, prefix)
    for _ in range(runs):
        s.run(None, {"input": x})
    events = json.loads(Path(s.end_profiling()).read_text())
    totals: dict[str, float] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            totals[group(e["name"], e["args"]["op_name"])] += e["dur"] / 1000 / runs
    return dict(totals)


def variants(fp32: Path, folder: Path) -> dict[str, Path]:
    """Our int8 model and the variants, all calibrated alike (MinMax on random inputs)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mobilenets.export.quantize import quantize_qdq

    def reader() -> object:
        rng = np.random.default_rng(0)
        batches = iter(
            [{"input": rng.standard_normal((4, 3, 224, 224), np.float32)} for _ in range(4)]
        )
        return type("Reader", (), {"get_next": staticmethod(lambda: next(batches, None))})()

    out = {"fp32": fp32, "int8 (ours)": folder / "ours.onnx"}
    quantize_qdq(fp32, out["int8 (ours)"], reader(), method="minmax")
    prepared = folder / "noopt.prep.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True, skip_optimization=True)
    out["hardswish as HardSwish"] = folder / "hswish.onnx"
    quantize_static(
        str(prepared),
        str(out["hardswish as HardSwish"]),
        reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    nodes = [n.name for n in onnx.load(str(fp32)).graph.node]
    for label, pattern in (("SE in fp32", "*/se/*"), ("depthwise in fp32", "*depthwise*")):
        out[label] = folder / f"{label.split()[0]}.onnx"
        keep = [n for n in nodes if fnmatch.fnmatch(n, pattern)]
        quantize_qdq(fp32, out[label], reader(), keep, method="minmax")
    return out


def trained_like(name: str) -> object:
    """The network with seeded random BN statistics and affine terms: distinct folded biases,
    as trained weights have (the exporter shares identical initializers, e.g. the all-zero
    biases of a fresh network, through Identity nodes the quantizer cannot see past)."""
    import torch

    from mobilenets.models import create_model

    torch.manual_seed(0)
    model = create_model(name)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/int8_profile.md")
    args = parser.parse_args()
    from mobilenets.complexity.latency import spread, time_interleaved
    from mobilenets.export.folding import fold_bn
    from mobilenets.export.onnx import export_onnx

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), np.float32)
    lines = [
        "# ONNX Runtime int8 on MobileNetV3 (`python benchmarks/int8_profile.py`)",
        "",
        "224 px, batch 1, 1 thread; kernel ms per call from ONNX Runtime's profiler, then "
        "the int8 variants timed interleaved (median, p10–p90).",
        "",
    ]
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            fp32 = export_onnx(fold_bn(trained_like(name)), folder / "fp32.onnx", 224)
            paths = variants(fp32, folder)
            groups = {
                k: profile_groups(paths[k], x, args.runs // 2, str(folder / k[:4]))
                for k in ("fp32", "int8 (ours)")
            }
            sessions = {k: session(p) for k, p in paths.items()}
            calls = {k: (lambda s=s: s.run(None, {"input": x})) for k, s in sessions.items()}
            timed = {k: spread(v) for k, v in time_interleaved(calls, 10, args.runs).items()}
        lines += [
            f"## {name}",
            "",
            "| kernel time, ms per call | fp32 | int8 (ours) |",
            "|---|---|---|",
        ]
        keys = sorted(
            set(groups["fp32"]) | set(groups["int8 (ours)"]),
            key=lambda k: -groups["int8 (ours)"].get(k, 0),
        )
        for key in keys:
            lines.append(
                f"| {key} | {groups['fp32'].get(key, 0):.3f} | "
                f"{groups['int8 (ours)'].get(key, 0):.3f} |"
            )
        lines.append(
            f"| **all kernels** | {sum(groups['fp32'].values()):.3f} | "
            f"{sum(groups['int8 (ours)'].values()):.3f} |"
        )
        lines += ["", "| model | median ms | p10–p90 | vs fp32 |", "|---|---|---|---|"]
        for key, (median, p10, p90) in timed.items():
            lines.append(
                f"| {key} | {median:.2f} | {p10:.2f}–{p90:.2f} | {median / timed['fp32'][0]:.2f} |"
            )
        lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
