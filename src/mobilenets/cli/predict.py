"""Top-5 predictions with class names for image files."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from mobilenets.cli import _common as cli_types
from mobilenets.weights import predict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="a mobilenets .safetensors file")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
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
    results = predict(args.weights, args.images, topk=args.topk)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    for result in results:
        print(result.path)
        for name, prob in result.top:
            print(f"  {100 * prob:6.2f}%  {name}")
    return 0
