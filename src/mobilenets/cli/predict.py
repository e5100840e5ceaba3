"""Top-5 predictions with class names for image files."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from mobilenets.cli import _common as cli_types
from mobilenets.errors import display

EXAMPLES = """\
  mobilenets predict --weights v2.safetensors cat.jpg dog.jpg
  mobilenets predict --weights torchvision:mobilenet_v2.IMAGENET1K_V1 chelsea.png
  mobilenets predict --weights runs/v1/model.onnx *.png --topk 3 --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        required=True,
        help="a saved network (.safetensors weights, a run's checkpoint.pt, an exported .onnx) "
        "or published weights by name (torchvision:mobilenet_v2.IMAGENET1K_V1)",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--topk", type=cli_types.positive, default=5, help="how many classes to list per image"
    )
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="report unreadable images and go on with the others (exit status 1)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from mobilenets.weights import predict

    results = predict(
        args.weights, args.images, topk=args.topk, skip_bad_images=args.skip_bad_images
    )
    failed = [r for r in results if r.error]
    for result in failed:
        print(f"mobilenets predict: skipped: {display(result.error)}", file=sys.stderr)
    if args.json:
        cli_types.emit(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for result in results:
            if result.error:
                continue
            cli_types.emit(display(result.path))
            for name, prob in result.top:
                cli_types.emit(f"  {100 * prob:6.2f}%  {display(name)}")
    return 1 if failed else 0
