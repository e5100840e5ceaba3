"""Export a checkpoint, a weights file or a registry model to ONNX (BN folded by default)."""

from __future__ import annotations

import argparse
import sys

from mobilenets.cli import _common as cli_types
from mobilenets.export.choices import EXPORTERS

EXAMPLES = """\
  mobilenets export runs/v1/checkpoint.pt --out runs/v1/model.onnx
  mobilenets export mobilenet_v3_small --out v3s.onnx --resolution 224
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a run's checkpoint.pt, a .safetensors weights file, published weights by name "
        "(torchvision:mobilenet_v2.IMAGENET1K_V1), or a model name (random weights)",
    )
    parser.add_argument("--out", required=True, help="FILE.onnx")
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
    from mobilenets.saved.onnx import onnx_metadata

    path = export_model(
        args.source,
        args.out,
        fold=args.fold_bn,
        resolution=args.resolution,
        dynamic_batch=args.dynamic_batch,
        exporter=args.exporter,
    )
    meta = onnx_metadata(path)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {meta['model']}, input "
        f"{meta['input_size']} px, {len(meta.get('classes') or [])} class names, BN "
        f"{'folded' if meta.get('bn_folded') else 'kept'}; checked with onnx.checker",
        file=sys.stderr,
    )
    return 0
