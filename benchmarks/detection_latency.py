"""End-to-end detection latency: resize + normalise, the network, decoding and NMS, for one
image, ours per runtime beside torchvision's eager SSDLite.

    python benchmarks/detection_latency.py [--size 320] [--runs 30] [--out DIR]

Every configuration is called in turn, round after round (interleaved), on the same 320×320
image; medians and the 10th–90th percentiles in ms, at the runtimes' default threads (all
cores). Ours: ``ssdlite_mobilenet_v3_large`` with torchvision's layout and channels (the network
``convert`` gives from torchvision's weights) in eager PyTorch and exported to ONNX Runtime,
ExecuTorch (XNNPACK) and OpenVINO, whose files hold the network while the detector's own
pre- and post-processing run around it. Writes ``detection_latency.md`` to DIR.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from mobilenets.export.model_export import export_model
from mobilenets.saved.info import NetworkInfo
from mobilenets.saved.safetensors import save_weights
from mobilenets.weights import load
from mobilenets.weights.convert import convert_state_dict, torchvision_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.manual_seed(0)
    theirs = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    target = torchvision_target("ssdlite320_mobilenet_v3_large", num_classes=91, reduced_tail=True)
    ours = convert_state_dict(theirs.state_dict(), target).eval()
    calls = {"torchvision eager": theirs, "ours eager": ours}
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "ssdlite.safetensors"
        save_weights(ours, weights, NetworkInfo(target.model, target.kwargs, input_size=320))
        for suffix, name in (
            (".onnx", "ONNX Runtime"),
            (".pte", "ExecuTorch"),
            (".xml", "OpenVINO"),
        ):
            calls[f"ours {name}"] = load(export_model(str(weights), Path(folder) / f"m{suffix}"))[0]
        image = [torch.rand(3, 320, 320)]
        times: dict[str, list[float]] = {k: [] for k in calls}
        with torch.inference_mode():
            for call in calls.values():  # warm-up
                call(image)
            for _ in range(args.runs):
                for key, call in calls.items():
                    start = time.perf_counter()
                    call(image)
                    times[key].append(1000 * (time.perf_counter() - start))
    lines = [
        f"End-to-end SSDLite V3-Large at 320×320, batch 1, {args.runs} interleaved runs, "
        f"{torch.get_num_threads()} threads, ms",
        "",
        "| configuration | median | p10–p90 |",
        "|---|---|---|",
    ]
    for key, values in times.items():
        deciles = statistics.quantiles(values, n=10)
        lines.append(
            f"| {key} | {statistics.median(values):.1f} | {deciles[0]:.1f}–{deciles[-1]:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    (Path(args.out) / "detection_latency.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
