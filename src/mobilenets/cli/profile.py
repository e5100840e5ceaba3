"""Parameters and mult-adds of one variant, per layer or per layer kind."""

from __future__ import annotations

import argparse

from mobilenets.catalog import MODEL_NAMES
from mobilenets.cli import _common as cli_types
from mobilenets.cli._common import print_json

EXAMPLES = """\
  mobilenets profile mobilenet_v1 --by kind
  mobilenets profile mobilenet_v2 --width-mult 0.5 --resolution 160 --latency
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fold-bn",
        action="store_true",
        help="fold BatchNorm into the convs first (the deployed network)",
    )
    parser.add_argument(
        "name", choices=MODEL_NAMES, metavar="NAME", help=f"one of: {', '.join(MODEL_NAMES)}"
    )
    parser.add_argument(
        "--width-mult", type=cli_types.width_mult, default=1.0, help="width multiplier α"
    )
    parser.add_argument(
        "--resolution",
        type=cli_types.resolution,
        default=None,
        help="input size in px (ρ·224); default: the model's",
    )
    parser.add_argument(
        "--num-classes", type=cli_types.integer(0, 1_000_000), default=1000, help="classifier size"
    )
    parser.add_argument(
        "--by", choices=("layer", "kind"), default="layer", help="one row per layer or per kind"
    )
    parser.add_argument(
        "--latency",
        action="store_true",
        help="also time every layer on this machine (batch 1), per layer and kind",
    )
    parser.add_argument(
        "--runs", type=cli_types.positive, default=20, help="timed forwards for --latency"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from mobilenets.complexity import profile
    from mobilenets.complexity.latency import layer_latency
    from mobilenets.export.folding import fold_bn
    from mobilenets.models.registry import create_model, get_model_entry

    model = create_model(args.name, width_mult=args.width_mult, num_classes=args.num_classes)
    if args.fold_bn:
        model = fold_bn(model)
    resolution = args.resolution or get_model_entry(args.name).input_size
    result = profile(model, resolution)
    timing = layer_latency(model, resolution, runs=args.runs) if args.latency else None
    if args.json:
        payload = result.to_dict()
        if timing is not None:
            payload["latency"] = {
                "forward_ms": timing.forward_ms,
                "layers": [vars(t) for t in timing.layers],
                "by_kind": {
                    k: {"ms": ms, "percent_time": t, "percent_macs": m}
                    for k, (ms, t, m) in timing.by_kind().items()
                },
            }
        print_json(payload)
        return 0
    cli_types.emit(result.format(args.by))
    if timing is not None:
        cli_types.emit()
        cli_types.emit(timing.format())
    return 0
