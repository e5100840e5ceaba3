"""Export a checkpoint, a weights file or a registry model to ONNX, ExecuTorch or OpenVINO."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mobilenets.cli import _common as cli_types
from mobilenets.export.choices import EXPORTERS, FORMAT_CHOICES

EXAMPLES = """\
  mobilenets export runs/v1/checkpoint.pt --out runs/v1/model.onnx
  mobilenets export mobilenet_v3_small --out v3s.onnx --resolution 224
  mobilenets export runs/v1/checkpoint.pt --out runs/v1/model.pte      # ExecuTorch, XNNPACK
  mobilenets export runs/v1/model_int8.onnx --out runs/v1/model_int8.xml   # OpenVINO IR
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a run's checkpoint.pt, a .safetensors weights file, published weights by name "
        "(torchvision:mobilenet_v2.IMAGENET1K_V1), a model name (random weights), or, for "
        "--format openvino, one of our .onnx files (quantize's int8 model gives an int8 IR)",
    )
    parser.add_argument(
        "--out", required=True, help="FILE.onnx, FILE.pte (ExecuTorch) or FILE.xml (OpenVINO)"
    )
    parser.add_argument(
        "--format",
        choices=FORMAT_CHOICES,
        default=None,
        help="onnx, pte (ExecuTorch with the XNNPACK delegate, batch 1) or openvino (IR); "
        "default: the one --out's suffix names",
    )
    parser.add_argument(
        "--fold-bn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fold BatchNorm into the convs (default on)",
    )
    parser.add_argument(
        "--resolution",
        type=cli_types.resolution,
        default=None,
        help="input size (default: the one it was trained at)",
    )
    parser.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="torchscript",
        help="torch's TorchScript-based exporter (0.2-0.3 s here) or the dynamo one "
        "(torch.export based, needs onnxscript; 2-7 s here, smaller graphs, equal outputs)",
    )
    parser.add_argument(
        "--dynamic-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a batch dimension of any size",
    )


def run(args: argparse.Namespace) -> int:
    from mobilenets.export.model_export import export_model
    from mobilenets.saved.loader import exported_info

    path = export_model(
        args.source,
        args.out,
        fold=args.fold_bn,
        resolution=args.resolution,
        dynamic_batch=args.dynamic_batch,
        exporter=args.exporter,
        format=args.format,
    )
    info = exported_info(path)
    parts = (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,)
    size = sum(p.stat().st_size for p in parts)
    from_onnx = Path(args.source).suffix == ".onnx"
    check = {
        ".onnx": "checked with onnx.checker",
        ".pte": "outputs checked against PyTorch",
        ".xml": "" if from_onnx else "outputs checked against PyTorch",
    }[path.suffix]
    print(
        f"wrote {path} ({size / 1e6:.2f} MB): {info.model}, input {info.input_size} px, "
        f"{len(info.classes)} class names" + (f"; {check}" if check else ""),
        file=sys.stderr,
    )
    from mobilenets.export.recommend import recommend

    advice = recommend(info.model)
    if advice:
        print(advice, file=sys.stderr)
    return 0
