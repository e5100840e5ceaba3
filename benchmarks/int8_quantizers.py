"""Which post-training quantizer keeps the real V2's predictions, per runtime (issue 27, item 2).

    python benchmarks/int8_quantizers.py [--out benchmarks/results]

torchvision's MobileNetV2 IMAGENET1K_V1 (found by name), calibrated on the same 256
class-stratified ``photos:large`` train crops and judged on the same 260 val crops by every
quantizer, through ``mobilenets quantize``'s own functions (so each row is what a user gets):

* ONNX Runtime QDQ, percentile calibration (the default) and minmax, this CPU's scheme;
* the percentile QDQ model converted to OpenVINO (``export m.int8.onnx --out m.int8.xml``);
* ExecuTorch PT2E with the XNNPACK quantizer (``--out m.pte``);
* NNCF for OpenVINO (``--out m.xml``): fast bias correction, full bias correction (the
  default), and full bias correction with the avx2 scheme (7-bit weights in every layer).

Each row: top-1 agreement with fp32, overall and where fp32 is ≥ 50% confident, whether the
agreement guard (85% / 98%) passes, and the median ms of a batch-1 call at 1 thread, every
file's calls interleaved with the others' (with each runtime's fp32 for scale). Writes
``int8_quantizers_<kind>.md`` and ``.json`` to ``--out``; the table names this CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import torch

from mobilenets.complexity.latency import spread, time_interleaved
from mobilenets.cpu import cpu_name, set_threads, this_cpu
from mobilenets.export.model_export import export_model
from mobilenets.export.quantize import (
    _compare,
    _datasets,
    quantize_onnx,
    quantize_openvino,
    quantize_pte,
)
from mobilenets.weights import load

WEIGHTS = "torchvision:mobilenet_v2.IMAGENET1K_V1"
DATA = "photos:large"


def quantize_all(folder: Path) -> list[tuple[str, str, Path, object]]:
    """(runtime, quantizer, file, report) for every candidate; fp32 files as report None."""
    onnx = export_model(WEIGHTS, folder / "v2.onnx")
    rows = [
        ("ONNX Runtime", "fp32", onnx, None),
        ("OpenVINO", "fp32", export_model(WEIGHTS, folder / "v2.xml"), None),
        ("ExecuTorch", "fp32", export_model(WEIGHTS, folder / "v2.pte"), None),
    ]
    for method in ("percentile", "minmax"):
        path = folder / f"v2.{method}.int8.onnx"
        report = quantize_onnx(onnx, path, DATA, calib_method=method)
        rows.append(("ONNX Runtime", f"QDQ, {method}", Path(report.path), report))
    qdq = Path(rows[3][3].path)
    xml = export_model(str(qdq), folder / "v2.qdq.int8.xml")
    fp32_net, info = load(WEIGHTS)
    _, val, why = _datasets(WEIGHTS, info, DATA, None)
    rows.append(
        ("OpenVINO", "ORT's percentile QDQ", xml, _compare(fp32_net, load(xml)[0], val, why))
    )
    report = quantize_pte(WEIGHTS, folder / "v2.int8.pte", DATA)
    rows.append(("ExecuTorch", "PT2E, XNNPACK quantizer", Path(report.path), report))
    for label, kwargs in (
        ("NNCF, fast bias correction", {"fast_bias_correction": True}),
        ("NNCF, bias correction (default)", {}),
        ("NNCF, bias correction, avx2 scheme", {"target_cpu": "avx2"}),
    ):
        name = label.split(", ", 1)[1].replace(" ", "_").replace("(", "").replace(")", "")
        report = quantize_openvino(WEIGHTS, folder / f"v2.nncf.{name}.xml", DATA, **kwargs)
        rows.append(("OpenVINO", label, Path(report.path), report))
    return rows


def figures(report: object) -> tuple[float, float, bool | None]:
    if report is None:
        return 100.0, 100.0, None
    if isinstance(report, dict):
        ok = report["agreement"] >= 85 and report["confident_agreement"] >= 98
        return report["agreement"], report["confident_agreement"], ok
    return report.agreement, report.confident_agreement, report.ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    set_threads(1)
    warnings.simplefilter("ignore")  # failed guards are in the table
    with tempfile.TemporaryDirectory() as tmp:
        rows = quantize_all(Path(tmp))
        x = torch.randn(1, 3, 224, 224)
        networks = {(r, q): load(p)[0] for r, q, p, _ in rows}
        calls = {key: (lambda n=net: n(x)) for key, net in networks.items()}
        with torch.inference_mode():
            times = time_interleaved(calls, 10, args.runs)
    kind = this_cpu()
    lines = [
        f"Real MobileNetV2 (IMAGENET1K_V1), 256 calibration / 260 judged {DATA} crops, "
        f"{cpu_name()} ({kind}), batch 1, 1 thread, {args.runs} interleaved calls",
        "",
        "| runtime | quantizer | agreement | where confident | guard | median ms (p10–p90) |",
        "|---|---|---|---|---|---|",
    ]
    record = []
    for runtime, quantizer, _, report in rows:
        overall, confident, ok = figures(report)
        median, p10, p90 = spread(times[runtime, quantizer])
        guard = "" if ok is None else ("passes" if ok else "fails")
        lines.append(
            f"| {runtime} | {quantizer} | {overall:.2f}% | {confident:.2f}% | {guard} | "
            f"{median:.2f} ({p10:.2f}–{p90:.2f}) |"
        )
        record.append(
            {
                "runtime": runtime,
                "quantizer": quantizer,
                "agreement": overall,
                "confident_agreement": confident,
                "guard_passes": ok,
                "median_ms": median,
            }
        )
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    (out / f"int8_quantizers_{kind}.md").write_text(table + "\n")
    (out / f"int8_quantizers_{kind}.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
