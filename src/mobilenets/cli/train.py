"""Train one network on a data spec (digits by default), resumably."""

from __future__ import annotations

import argparse

from mobilenets.cli import _common as cli_types
from mobilenets.models.registry import list_models
from mobilenets.training import TrainConfig, distributed, fit
from mobilenets.training.config import OPTIMIZERS, SCHEDULES
from mobilenets.training.sweep import SWEEP_EPOCHS


def add_training_arguments(parser: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """Flags shared by ``train`` and ``sweep`` (the sweep sets α and resolution per cell)."""
    defaults = TrainConfig()
    parser.add_argument("--model", choices=list_models(), default=defaults.model)
    if not sweep:
        parser.add_argument(
            "--width-mult",
            type=cli_types.width_mult,
            default=defaults.width_mult,
            help="width multiplier α",
        )
        parser.add_argument(
            "--resolution",
            type=cli_types.resolution,
            default=defaults.resolution,
            help="input size in px (ρ·224), ≥ 32",
        )
    parser.add_argument(
        "--data",
        default=defaults.data,
        help="digits (default), cifar10, imagenette[:160px|:320px|:full], or a "
        "folder with train/ and val/",
    )
    parser.add_argument(
        "--epochs", type=cli_types.positive, default=SWEEP_EPOCHS if sweep else defaults.epochs
    )
    parser.add_argument(
        "--batch-size",
        type=cli_types.integer(2),
        default=defaults.batch_size,
        help="global batch size (≥ 2: BatchNorm needs two samples per step)",
    )
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    parser.add_argument(
        "--lr",
        type=cli_types.number(0, 10, low_open=True),
        default=None,
        help="peak learning rate (default: 0.05 sgd, 0.01 rmsprop, 0.002 adamw)",
    )
    parser.add_argument(
        "--momentum", type=cli_types.number(0, 1, high_open=True), default=defaults.momentum
    )
    parser.add_argument(
        "--weight-decay", type=cli_types.number(0, 1), default=defaults.weight_decay
    )
    parser.add_argument(
        "--label-smoothing",
        type=cli_types.number(0, 1, high_open=True),
        default=defaults.label_smoothing,
    )
    parser.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule)
    parser.add_argument(
        "--warmup-epochs", type=cli_types.number(0, 1000), default=defaults.warmup_epochs
    )
    parser.add_argument(
        "--ema-decay",
        type=cli_types.number(0, 1, low_open=True, high_open=True),
        default=None,
        help="keep and evaluate an EMA of the weights (e.g. 0.999)",
    )
    parser.add_argument(
        "--dropout",
        type=cli_types.number(0, 1, high_open=True),
        default=None,
        help="dropout before the classifier",
    )
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on CPU, fp16 on CUDA")
    parser.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=defaults.channels_last
    )
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--workers",
        type=cli_types.integer(0, 256),
        default=defaults.workers,
        help="DataLoader worker processes",
    )
    parser.add_argument("--seed", type=cli_types.integer(0, 2**32 - 1), default=defaults.seed)
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=defaults.augment,
        help="training augmentation",
    )
    parser.add_argument(
        "--cache-in-memory",
        action="store_true",
        help="decode and resize every image once, train from RAM",
    )
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="skip and count unreadable images instead of failing",
    )
    parser.add_argument(
        "--sync-bn", action="store_true", help="SyncBatchNorm across processes under torchrun"
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help="where downloads go (default $MOBILENETS_DATA or ~/.cache)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace, out: str) -> TrainConfig:
    return TrainConfig(
        model=args.model,
        width_mult=getattr(args, "width_mult", 1.0),
        resolution=getattr(args, "resolution", 32),
        data=args.data,
        out=out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        ema_decay=args.ema_decay,
        amp=args.amp,
        channels_last=args.channels_last,
        device=args.device,
        workers=args.workers,
        seed=args.seed,
        resume=args.resume,
        augment=args.augment,
        cache_in_memory=args.cache_in_memory,
        skip_bad_images=args.skip_bad_images,
        sync_bn=args.sync_bn,
        data_root=args.data_root,
        progress=not args.no_progress,
        model_kwargs={} if args.dropout is None else {"dropout": args.dropout},
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser)
    parser.add_argument("--out", required=True, help="run folder (checkpoint, metrics, plots)")


def run(args: argparse.Namespace) -> int:
    try:
        result = fit(config_from_args(args, args.out))
    finally:
        distributed.cleanup()
    if not distributed.read_env().is_main:
        return 0
    s = result.summary
    print(
        f"{s['model']} α={s['width_mult']} {s['resolution']} px: top-1 {s['val_top1']:.2f}%, "
        f"top-5 {s['val_top5']:.2f}% on {s['data']} ({s['train_seconds']:.1f} s of training); "
        f"wrote {result.out}/summary.json, metrics.csv, curves.png, checkpoint.pt"
    )
    return 0
