"""int8 calibration methods and fp32 fallbacks compared on real ImageNet weights and real photos.

    python benchmarks/quantize_calibration.py [--calib-images 256] [--out DIR]

torchvision's MobileNetV2 IMAGENET1K_V1 (found by name), exported to ONNX at 224 px, quantized by
``mobilenets quantize`` with each of ONNX Runtime's calibration methods (MinMax, Entropy,
Percentile), each with no fp32 layers and with per-layer fp32 fallbacks, calibrated on a
class-stratified sample of the ``photos:large`` train patches (192–320 px) and judged on the
other 260 patches (val)
by top-1 agreement with fp32 (overall, and where fp32 is ≥ 50% confident). Then the int8/fp32
latency ratio of the chosen setting (ONNX Runtime, batch 1, 1 and 2 threads, interleaved runs,
medians). Writes ``quantize_calibration.md`` and ``.json`` to DIR (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from mobilenets.complexity.latency import time_calls
from mobilenets.export.choices import CALIBRATION_METHODS, DEFAULT_CALIBRATION
from mobilenets.export.model_export import export_model
from mobilenets.export.quantize import quantize_onnx

WEIGHTS = "torchvision:mobilenet_v2.IMAGENET1K_V1"
FALLBACKS = {
    "none": (),
    "stem + classifier": ("/stem/*", "/classifier/*"),
}


def latency_ratio(fp32: Path, int8: Path, threads: int, runs: int = 200) -> dict:
    """Median ms of fp32 and int8 under ONNX Runtime, calls interleaved (one of each in turn)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = [
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for p in (fp32, int8)
    ]
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    times: list[list[float]] = [[], []]
    for i in range(runs + 20):  # one call of each in turn; the first 20 rounds warm up
        for k, session in enumerate(sessions):
            (ms,) = time_calls(lambda s=session: s.run(None, {"input": x}), 0, 1)
            if i >= 20:
                times[k].append(ms)
    fp32_ms, int8_ms = (statistics.median(t) for t in times)
    return {"threads": threads, "fp32_ms": fp32_ms, "int8_ms": int8_ms, "ratio": int8_ms / fp32_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--methods", default=",".join(CALIBRATION_METHODS))
    parser.add_argument("--data", default="photos:large", help="calibration and held-out data")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quant-"))
    fp32 = export_model(WEIGHTS, work / "v2.onnx")
    rows = []
    for method in args.methods.split(","):
        for name, patterns in FALLBACKS.items():
            out = work / f"{method}-{len(rows)}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report = quantize_onnx(
                    fp32,
                    out,
                    args.data,
                    calib_images=args.calib_images,
                    calib_method=method,
                    keep_fp32=patterns,
                )
            row = {
                "method": method,
                "fp32": name,
                "agreement": report.agreement,
                "confident_agreement": report.confident_agreement,
                "confident_images": report.confident_images,
                "images": report.images,
                "ok": report.ok,
                "file": str(out),
            }
            rows.append(row)
            print(
                f"{method:>10} fp32 {name:<30} agreement {row['agreement']:.2f}%  confident "
                f"{row['confident_agreement']:.2f}% ({row['confident_images']})",
                file=sys.stderr,
            )
    best = max(rows, key=lambda r: (r["ok"], r["agreement"], -len(FALLBACKS[r["fp32"]])))
    default = next(r for r in rows if r["method"] == DEFAULT_CALIBRATION and r["fp32"] == "none")
    timing = [latency_ratio(fp32, Path(default["file"]), threads) for threads in (1, 2)]
    lines = [
        f"MobileNetV2 IMAGENET1K_V1, 224 px; calibrated on {args.calib_images} {args.data} train "
        f"patches (class-stratified, seed 0), judged on {rows[0]['images']} val patches\n",
        "| calibration | kept in fp32 | top-1 agreement | where fp32 ≥ 50% confident | guard |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['fp32']} | {r['agreement']:.2f}% | "
            f"{r['confident_agreement']:.2f}% ({r['confident_images']} images) | "
            f"{'passed' if r['ok'] else 'failed'} |"
        )
    lines += [
        "",
        f"highest agreement: {best['method']}, fp32 kept: {best['fp32']}. Latency of the "
        f"default ({DEFAULT_CALIBRATION}, nothing kept in fp32): ONNX Runtime, batch 1, medians "
        "of 200 interleaved calls\n",
        "| threads | fp32 ms | int8 ms | int8 / fp32 |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t['threads']} | {t['fp32_ms']:.2f} | {t['int8_ms']:.2f} | {t['ratio']:.2f} |"
        for t in timing
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantize_calibration.md").write_text(table)
    (out / "quantize_calibration.json").write_text(
        json.dumps({"rows": rows, "best": best, "latency": timing}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
