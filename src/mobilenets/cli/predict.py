"""Top-5 predictions with class names for image files."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
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
        help="a segmenter's or detector's output folder (required for them): NAME.mask.png "
        "(class index per pixel) and NAME.overlay.png, or NAME.boxes.json and NAME.boxes.png",
    )
    parser.add_argument(
        "--min-score",
        type=cli_types.number(0.0, 1.0),
        default=0.3,
        help="a detector's boxes: the lowest score listed and drawn",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from mobilenets.weights import load, predict

    network = load(args.weights)
    if network[1].task == "segmentation":
        return _segment(args, network)
    if network[1].task == "detection":
        return _detect(args, network)
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
    return _report(
        args,
        results,
        lambda r: (
            f"{display(r.path)} → {display(r.mask)} ("
            + ", ".join(f"{display(c)} {100 * v:.1f}%" for c, v in r.shares.items())
            + ")"
        ),
    )


def _detect(args: argparse.Namespace, network: tuple) -> int:
    from mobilenets.errors import ConfigError
    from mobilenets.training.tasks.detection import predict_boxes

    if not args.out:
        raise ConfigError(
            f"{display(args.weights)} is a detector: give --out FOLDER for its boxes "
            "(JSON) and pictures"
        )
    results = predict_boxes(
        network,
        args.images,
        args.out,
        min_score=args.min_score,
        skip_bad_images=args.skip_bad_images,
    )
    return _report(
        args,
        results,
        lambda r: f"{display(r.path)}: {len(r.boxes)} boxes → {display(r.picture)}",
    )


def _report(args: argparse.Namespace, results: list, line: Callable[[object], str]) -> int:
    """A dense task's results: skipped images on stderr; JSON or one line per image."""
    failed = [r for r in results if r.error]
    for result in failed:
        print(f"mobilenets predict: skipped: {display(result.error)}", file=sys.stderr)
    if args.json:
        cli_types.emit(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for result in results:
            if not result.error:
                cli_types.emit(line(result))
    return 1 if failed else 0
