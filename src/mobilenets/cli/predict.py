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
    parser.add_argument(
        "--out",
        help="a segmenter's output folder: NAME.mask.png (class index per pixel) and "
        "NAME.overlay.png per image (required for segmentation networks)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from mobilenets.weights import load, predict

    network = load(args.weights)
    if network[1].task == "segmentation":
        return _segment(args, network)
    results = predict(network, args.images, topk=args.topk, skip_bad_images=args.skip_bad_images)
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


def _segment(args: argparse.Namespace, network: tuple) -> int:
    from mobilenets.errors import ConfigError
    from mobilenets.training.tasks.segmentation import predict_masks

    if not args.out:
        raise ConfigError(
            f"{display(args.weights)} is a segmentation network: give --out FOLDER for its "
            "masks and overlays"
        )
    results = predict_masks(network, args.images, args.out, skip_bad_images=args.skip_bad_images)
    failed = [r for r in results if r.error]
    for result in failed:
        print(f"mobilenets predict: skipped: {display(result.error)}", file=sys.stderr)
    if args.json:
        cli_types.emit(json.dumps([asdict(r) for r in results], indent=2))
        return 1 if failed else 0
    for result in results:
        if not result.error:
            shares = ", ".join(f"{display(c)} {100 * v:.1f}%" for c, v in result.shares.items())
            cli_types.emit(f"{display(result.path)} → {display(result.mask)} ({shares})")
    return 1 if failed else 0
