"""Train one network on a data spec (digits by default), resumably."""

from __future__ import annotations

import argparse
import json
import sys

from mobilenets.cli import _common as cli_types
from mobilenets.errors import display
from mobilenets.training.config import SWEEP_EPOCHS, TrainConfig

EXAMPLES = """\
  mobilenets train --model mobilenet_v1 --width-mult 0.5 --out runs/v1
  mobilenets train --data path/to/folder --model mobilenet_v3_small --epochs 30 --out runs/a
"""


def add_training_arguments(parser: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """One flag per :class:`TrainConfig` field, generated from the field: its type, default,
    range or choices and help. ``sweep`` leaves out what the sweep sets per cell."""
    cli_types.add_field_arguments(
        parser,
        TrainConfig,
        include=lambda f: not sweep or f.metadata.get("sweep", True),
        defaults={"epochs": SWEEP_EPOCHS} if sweep else None,
    )
    parser.add_argument(
        "--dropout",
        type=cli_types.number(0, 1, high_open=True),
        default=None,
        help="dropout before the classifier (a model keyword; default: the model's)",
    )


def config_from_args(args: argparse.Namespace, out: str) -> TrainConfig:
    """The config the flags describe (fields the command does not offer keep their defaults)."""
    values = cli_types.field_values(TrainConfig, args, skip=("out",))
    model_kwargs = {} if args.dropout is None else {"dropout": args.dropout}
    return TrainConfig(**values, out=out, model_kwargs=model_kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser)
    parser.add_argument("--out", required=True, help="run folder (checkpoint, metrics, plots)")
    parser.add_argument("--json", action="store_true", help="print summary.json on stdout")


def run(args: argparse.Namespace) -> int:
    from mobilenets.training import distributed
    from mobilenets.training.loop import fit

    try:
        result = fit(config_from_args(args, args.out))
    finally:
        distributed.cleanup()
    if not distributed.read_env().is_main:
        return 0
    s = result.summary
    if args.json:
        cli_types.emit(json.dumps(s, indent=2))
    else:
        from mobilenets.training.tasks import TASKS

        scores = TASKS[s.get("task", "classification")].scores_text(s)
        cli_types.emit(
            f"{s['model']} α={s['width_mult']} {s['resolution']} px: {scores} on "
            f"{display(s['data'])} ({s['train_seconds']:.1f} s of training)"
        )
    print(
        f"wrote {result.out}/summary.json, metrics.csv, curves.png, checkpoint.pt",
        file=sys.stderr,
    )
    return 0
