"""Parameters and mult-adds of one variant, per layer or per layer kind."""

from __future__ import annotations

import argparse

from mobilenets.cli._common import print_json
from mobilenets.complexity import profile
from mobilenets.models.registry import create_model, get_model_entry, list_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", choices=list_models(), metavar="NAME", help=f"one of: {', '.join(list_models())}"
    )
    parser.add_argument("--width-mult", type=float, default=1.0, help="width multiplier α")
    parser.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="input size in px (ρ·224); default: the model's",
    )
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--by", choices=("layer", "kind"), default="layer")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    model = create_model(args.name, width_mult=args.width_mult, num_classes=args.num_classes)
    resolution = args.resolution or get_model_entry(args.name).input_size
    result = profile(model, resolution)
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.format(args.by))
    return 0
