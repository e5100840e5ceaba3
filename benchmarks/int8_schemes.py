"""ONNX Runtime's int8 types on this CPU: agreement with fp32 and latency, per scheme.

    python benchmarks/int8_schemes.py [--data photos:large] [--out benchmarks/results]

torchvision's MobileNetV2 IMAGENET1K_V1 (found by name), exported at 224 px, quantized by
``quantize_onnx`` (percentile calibration on 256 class-stratified ``photos:large`` train
patches, nothing kept in fp32) with each scheme:

* int8 weights / uint8 activations (what ``--target-cpu vnni`` and ``arm`` choose);
* the same with 7-bit weights (``reduce_range``; what ``--target-cpu avx2`` chooses);
* uint8 weights / uint8 activations (the other remedy ONNX Runtime's docs name).

Each is judged on the 260 val patches (top-1 agreement with fp32, overall and where fp32 is
≥ 50% confident) and timed with ONNX Runtime at batch 1 on 1 thread, every file's calls
interleaved with the others' (medians). Not at 2 threads: runtimes interleaved in one process
above one thread disturb each other (``mobilenets.export.isolate``); bench times them apart.
The table names this CPU and its kind (``mobilenets.cpu.this_cpu``); run it on each kind of
machine. Writes ``int8_schemes_<kind>.md``
and ``.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from mobilenets.complexity.latency import time_calls
from mobilenets.cpu import SCHEMES, Int8Scheme, cpu_name, this_cpu
from mobilenets.export.model_export import export_model
from mobilenets.export.quantize import quantize_onnx

WEIGHTS = "torchvision:mobilenet_v2.IMAGENET1K_V1"
CANDIDATES = {
    "int8 / uint8": SCHEMES["vnni"],
    "int8 (7 bits) / uint8": SCHEMES["avx2"],
    "uint8 / uint8": Int8Scheme("avx2", "uint8", "uint8", "ORT's docs: no saturation"),
}


def latencies(paths: list[Path], threads: int, runs: int = 200) -> list[float]:
    """Median ms per file under ONNX Runtime at batch 1, one call of each in turn."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = [
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in paths
    ]
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    times: list[list[float]] = [[] for _ in paths]
    for i in range(runs + 20):  # the first 20 rounds warm up
        for k, session in enumerate(sessions):
            (ms,) = time_calls(lambda s=session: s.run(None, {"input": x}), 0, 1)
            if i >= 20:
                times[k].append(ms)
    return [statistics.median(t) for t in times]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="photos:large", help="calibration and held-out data")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per file and thread")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="int8-schemes-"))
    fp32 = export_model(WEIGHTS, work / "v2.onnx")
    rows, paths = [], [fp32]
    for k, (name, scheme) in enumerate(CANDIDATES.items()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the guard's verdict is in the table
            report = quantize_onnx(fp32, work / f"s{k}.onnx", args.data, target_cpu=scheme)
        paths.append(Path(report.path))
        rows.append(
            {
                "scheme": name,
                "agreement": report.agreement,
                "confident_agreement": report.confident_agreement,
                "confident_images": report.confident_images,
                "images": report.images,
            }
        )
        print(
            f"{name}: {report.agreement:.2f}% ({report.confident_agreement:.2f}%)", file=sys.stderr
        )
    timing = {t: latencies(paths, t, args.runs) for t in (1,)}
    for k, row in enumerate(rows, start=1):
        row.update({f"ms_{t}_threads": timing[t][k] for t in timing})
    kind, cpu = this_cpu(), cpu_name()
    result = {
        "cpu": cpu,
        "kind": kind,
        "fp32_ms": {t: timing[t][0] for t in timing},
        "rows": rows,
    }
    lines = [
        f"MobileNetV2 IMAGENET1K_V1, 224 px, percentile calibration on 256 {args.data} train "
        f"patches; judged on {rows[0]['images']} val patches. CPU: {cpu}, "
        f"{os.cpu_count()} cores, kind **{kind}** "
        f"(`--target-cpu auto` chooses {SCHEMES[kind].describe()}). Latency: ONNX Runtime, "
        f"batch 1, 1 thread, medians of {args.runs} interleaved calls; fp32 {timing[1][0]:.2f} ms.",
        "",
        "| weights / activations | agreement | where fp32 ≥ 50% confident | ms, 1 thread |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['scheme']} | {row['agreement']:.2f}% | {row['confident_agreement']:.2f}% "
            f"({row['confident_images']}) | {row['ms_1_threads']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"int8_schemes_{kind}.md").write_text(text)
    (out / f"int8_schemes_{kind}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
