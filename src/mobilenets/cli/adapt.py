"""NetAdapt: cut a network's layers to a latency target measured here; compare with uniform α."""

from __future__ import annotations

import argparse
import sys

from mobilenets.adapt.config import UNIFORM_ALPHAS, AdaptConfig
from mobilenets.catalog import MODEL_NAMES
from mobilenets.cli import _common as cli_types

EXAMPLES = """\
  mobilenets adapt --model mobilenet_v3_small --target-ratio 0.6 --out runs/adapt
  mobilenets adapt --model mobilenet_v2 --width-mult 0.75 --data photos --resolution 96 \\
      --target-ms 1.5 --backend ort --out runs/adapt_v2
  mobilenets adapt ... --out runs/adapt          # again after a kill: continues where it stopped
"""
ADAPTABLE = tuple(n for n in MODEL_NAMES if n.startswith(("mobilenet_v2", "mobilenet_v3")))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = AdaptConfig(target_ratio=0.5)
    add = parser.add_argument
    add("--model", choices=ADAPTABLE, default=d.model, help="the seed network's family")
    add("--width-mult", type=cli_types.width_mult, default=d.width_mult, help="the seed's α")
    add("--data", default=d.data, help="data spec (digits, photos, cifar10, a folder)")
    add("--resolution", type=cli_types.resolution, default=d.resolution, help="input size, px")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--target-ms", type=cli_types.number(0, low_open=True), help="latency target, ms"
    )
    target.add_argument(
        "--target-ratio",
        type=cli_types.number(0, 1, low_open=True, high_open=True),
        help="latency target as a share of the seed's predicted latency",
    )
    add("--backend", choices=("ort", "eager"), default=d.backend, help="runtime latency is for")
    add("--threads", type=cli_types.positive, default=d.threads, help="runtime threads")
    add("--steps", type=cli_types.positive, default=d.steps, help="NetAdapt steps planned")
    add("--seed-steps", type=cli_types.positive, default=d.seed_steps,
        help="SGD steps training the seed network")  # fmt: skip
    add("--finetune-steps", type=cli_types.positive, default=d.finetune_steps,
        help="short-term fine-tune of each proposal, SGD steps")  # fmt: skip
    add("--final-epochs", type=cli_types.positive, default=d.final_epochs,
        help="epochs training the adapted and each uniform-α network from scratch")  # fmt: skip
    add("--seeds", type=cli_types.positive, default=d.seeds,
        help="training seeds of that comparison (mean and spread)")  # fmt: skip
    add("--uniform", type=cli_types.comma_list(cli_types.width_mult),
        default=list(UNIFORM_ALPHAS), help="the uniform α networks compared")  # fmt: skip
    add("--batch-size", type=cli_types.integer(2), default=d.batch_size, help="batch size")
    add("--lr", type=cli_types.number(0, low_open=True), default=d.lr, help="SGD learning rate")
    add("--holdout", type=cli_types.positive, default=d.holdout,
        help="training images kept out of fine-tunes to rank proposals")  # fmt: skip
    add("--divisor", type=int, choices=(1, 2, 4, 8, 16), default=d.divisor,
        help="cut channels stay divisible by this (4 below 16 channels)")  # fmt: skip
    add("--out", default="runs/adapt", help="output folder (a search there is continued)")
    add("--json", action="store_true", help="print the comparison as JSON on stdout")


def config_from_args(args: argparse.Namespace) -> AdaptConfig:
    fields = (
        "model", "width_mult", "data", "resolution", "target_ms", "target_ratio", "backend",
        "threads", "steps", "seed_steps", "finetune_steps", "final_epochs", "seeds",
        "batch_size", "lr", "holdout", "divisor",
    )  # fmt: skip
    return AdaptConfig(**{f: getattr(args, f) for f in fields}, uniform=tuple(args.uniform))


def run(args: argparse.Namespace) -> int:
    from mobilenets.adapt.run import adapt

    result = adapt(config_from_args(args), args.out)
    if args.json:
        cli_types.print_json(result["comparison"])
        return 0
    print(f"{'network':<10} {'measured ms':>12} {'top-1 %':>22} {'M mult-adds':>12}")
    for row in result["comparison"]:
        top1 = f"{row['top1_mean']:.2f} ({row['top1_min']:.2f}–{row['top1_max']:.2f})"
        print(
            f"{row['network']:<10} {row['measured_ms']:>12.3f} {top1:>22} "
            f"{row['macs'] / 1e6:>12.2f}"
        )
    print(f"wrote {args.out}/adapt.csv, table.json, comparison.csv, adapt.png", file=sys.stderr)
    return 0
