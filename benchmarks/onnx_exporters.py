"""torch's two ONNX exporters on our four models: export time, graph size, agreement with PyTorch.

    python benchmarks/onnx_exporters.py [--resolution 224]

For each model (random weights, BN statistics randomised so that outputs depend on every
tensor, BN kept unfolded) ``export_onnx(..., exporter="torchscript" | "dynamo")``: wall time of
the export (median of 3, a fresh export each), file size, node count, and the largest difference
from PyTorch of ONNX Runtime's logits on a batch of 3 (the dynamic batch axis in use).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from mobilenets import create_model
from mobilenets.export.choices import EXPORTERS
from mobilenets.export.onnx import export_onnx
from mobilenets.saved.onnx import OnnxSession

MODELS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")


def randomized(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=224)
    args = parser.parse_args()
    import onnx

    work = Path(tempfile.mkdtemp(prefix="exporters-"))
    x = torch.randn(3, 3, args.resolution, args.resolution)
    print("| model | exporter | export s (median of 3) | MB | nodes | max abs diff vs PyTorch |")
    print("|---|---|---|---|---|---|")
    for name in MODELS:
        model = randomized(name)
        with torch.inference_mode():
            reference = model(x)
        for exporter in EXPORTERS:
            path = work / f"{name}-{exporter}.onnx"
            times = []
            for _ in range(3):
                path.unlink(missing_ok=True)
                start = time.perf_counter()
                export_onnx(model, path, args.resolution, exporter=exporter)
                times.append(time.perf_counter() - start)
            logits = torch.from_numpy(OnnxSession(path)(x.numpy()))
            diff = float((logits - reference).abs().max())
            nodes = len(onnx.load(str(path)).graph.node)
            print(
                f"| {name} | {exporter} | {statistics.median(times):.2f} | "
                f"{path.stat().st_size / 1e6:.2f} | {nodes} | {diff:.2e} |",
                flush=True,
            )
    print(f"torch {torch.__version__}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
