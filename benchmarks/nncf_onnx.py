"""NNCF's post-training quantization on the ONNX model, run by ONNX Runtime, beside ONNX
Runtime's own QDQ quantizer (issue 27, item 2: the best quantizer for each runtime).

    python benchmarks/nncf_onnx.py [--out benchmarks/results]

The real V2 (torchvision's IMAGENET1K_V1), the same 256 class-stratified ``photos:large``
calibration crops and 260 judged val crops as ``benchmarks/int8_quantizers.py``. ONNX Runtime's
percentile QDQ (``--quantizer onnxruntime``); ``quantize``'s default, NNCF made for ONNX
Runtime's fused kernels (:mod:`mobilenets.export.nncf_onnx`), for this CPU and for AVX2; NNCF
as it writes its files (ONNX backend, in a child process: it hooks torch) with full bias
correction, its performance (symmetric activations) and mixed (asymmetric activations)
presets, and fast bias correction; and ONNX Runtime's own quantizer given NNCF's
bias-corrected biases and activation ranges. Each file's agreement with
fp32 (overall, where fp32 is confident) and its latency in ONNX Runtime (batch 1, 1 thread, all
calls interleaved). Writes ``nncf_onnx_<kind>.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from mobilenets.complexity.latency import spread, time_interleaved
from mobilenets.cpu import cpu_name, set_threads, this_cpu
from mobilenets.export.model_export import export_model
from mobilenets.export.nncf_onnx import run_nncf
from mobilenets.export.quantize import _compare, _datasets, quantize_onnx, stratified_sample
from mobilenets.weights import load

WEIGHTS = "torchvision:mobilenet_v2.IMAGENET1K_V1"
DATA = "photos:large"
DEFAULTS = {
    "ONNX Runtime QDQ, percentile (`--quantizer onnxruntime`)": {"quantizer": "onnxruntime"},
    "NNCF made for ONNX Runtime (`quantize`'s default)": {},
    "NNCF made for ONNX Runtime, `--target-cpu avx2`": {"target_cpu": "avx2"},
}
VARIANTS = {
    "NNCF, bias correction, performance preset": ("PERFORMANCE", "0"),
    "NNCF, bias correction, mixed preset": ("MIXED", "0"),
    "NNCF, fast bias correction, performance preset": ("PERFORMANCE", "1"),
}


def nncf_onnx(source: Path, samples: Path, out: Path, preset: str, fast: str) -> Path:
    """NNCF's int8 of ``source`` as NNCF writes it (per-channel activations where it chooses,
    its default overflow fix), by quantize's own child process; the fp32 file's record copied
    in (so it loads as ours)."""
    spec = {"fp32": str(source), "samples": str(samples), "out": str(out), "ignored": []}
    spec |= {"overflow_fix": "first_layer_only", "fast_bias_correction": fast == "1"}
    run_nncf(spec | {"preset": preset, "per_tensor_activations": False}, out.parent)
    fp32, int8 = onnx.load(str(source)), onnx.load(str(out))
    del int8.metadata_props[:]
    int8.metadata_props.extend(fp32.metadata_props)
    onnx.save(int8, str(out))
    return out


def nncf_ranges_in_ort(
    source: Path, nncf_file: Path, out: Path, calib: object, indices: list[int]
) -> Path:
    """ONNX Runtime's own QDQ quantizer (minmax, per-channel int8 weights, uint8 activations)
    on the fp32 model with NNCF's bias-corrected biases, each activation NNCF quantizes given
    NNCF's range (``TensorQuantOverrides``): NNCF's choices on ONNX Runtime's fused path."""
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mobilenets.export.quantize import _Calibration

    nncf = onnx.load(str(nncf_file))
    values = {i.name: numpy_helper.to_array(i) for i in nncf.graph.initializer}
    layers = {n.name: n for n in nncf.graph.node if n.op_type in ("Conv", "Gemm")}
    model = onnx.load(str(source))
    weights = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:  # the corrected biases, by layer name
        if node.name in layers and len(node.input) > 2 and len(layers[node.name].input) > 2:
            bias = values[layers[node.name].input[2]]
            weights[node.input[2]].CopyFrom(numpy_helper.from_array(bias, node.input[2]))
    overrides = {}
    for node in nncf.graph.node:  # each activation's range, from its scale and zero point
        if node.op_type != "QuantizeLinear" or node.input[0] in values:
            continue
        scale, zero = values[node.input[1]], values[node.input[2]]
        if scale.size == 1:
            low, high = (-128, 127) if zero.dtype == np.int8 else (0, 255)
            s, z = float(scale), int(zero)
            overrides[node.input[0]] = [
                {"rmin": np.float32((low - z) * s), "rmax": np.float32((high - z) * s)}
            ]
    corrected, prepared = out.with_suffix(".fp32.onnx"), out.with_suffix(".prepared.onnx")
    onnx.save(model, str(corrected))
    quant_pre_process(str(corrected), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(out),
        _Calibration(calib, indices, "input"),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"TensorQuantOverrides": overrides},
    )
    int8 = onnx.load(str(out))
    del int8.metadata_props[:]
    int8.metadata_props.extend(model.metadata_props)
    onnx.save(int8, str(out))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # failed guards are in the table
    folder = Path(tempfile.mkdtemp())
    source = export_model(WEIGHTS, folder / "v2.onnx")
    fp32, info = load(WEIGHTS)
    calib, val, why = _datasets(WEIGHTS, info, DATA, None)
    indices = stratified_sample(calib, 256, 0)
    np.save(folder / "samples.npy", np.concatenate([calib[i][0][None].numpy() for i in indices]))
    rows = {}
    for label, settings in DEFAULTS.items():
        report = quantize_onnx(source, folder / f"{len(rows)}.int8.onnx", DATA, **settings)
        rows[label] = (Path(report.path), report.agreement, report.confident_agreement)
    for label, (preset, fast) in VARIANTS.items():
        path = nncf_onnx(
            source, folder / "samples.npy", folder / f"{preset}{fast}.onnx", *(preset, fast)
        )
        result = _compare(fp32, load(path)[0], val, why)
        rows[label] = (path, result["agreement"], result["confident_agreement"])
    label = "ONNX Runtime QDQ with NNCF's biases and activation ranges (mixed preset)"
    path = nncf_ranges_in_ort(
        source, folder / "MIXED0.onnx", folder / "ranges.onnx", calib, indices
    )
    result = _compare(fp32, load(path)[0], val, why)
    rows[label] = (path, result["agreement"], result["confident_agreement"])
    set_threads(1)
    networks = {"fp32": load(source)[0]} | {k: load(p)[0] for k, (p, _, _) in rows.items()}
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        times = time_interleaved(
            {k: (lambda n=n: n(x)) for k, n in networks.items()}, 10, args.runs
        )
    lines = [
        f"Real MobileNetV2 (IMAGENET1K_V1), 256 calibration / 260 judged {DATA} crops, "
        f"{cpu_name()} ({this_cpu()}); every file run by ONNX Runtime, batch 1, 1 thread, "
        f"{args.runs} interleaved calls (`python benchmarks/nncf_onnx.py`)",
        "",
        "| quantizer | agreement | where confident | median ms (p10–p90) |",
        "|---|---|---|---|",
        "| fp32 | 100.00% | 100.00% | {:.2f} ({:.2f}–{:.2f}) |".format(*spread(times["fp32"])),
    ]
    for label, (_, overall, confident) in rows.items():
        median, p10, p90 = spread(times[label])
        lines.append(
            f"| {label} | {overall:.2f}% | {confident:.2f}% | {median:.2f} ({p10:.2f}–{p90:.2f}) |"
        )
    table = "\n".join(lines)
    print(table)
    (Path(args.out) / f"nncf_onnx_{this_cpu()}.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
