"""Evaluate a training checkpoint: top-1, top-5 and loss; optionally one prediction per image."""

from __future__ import annotations

import argparse
import json
import sys

from mobilenets.cli import _common as cli_types
from mobilenets.errors import display

EXAMPLES = """\
  mobilenets eval --checkpoint runs/v1/checkpoint.pt
  mobilenets eval --weights v2.safetensors --data /path/to/imagenet --predictions preds.csv
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        "--weights",
        dest="checkpoint",
        required=True,
        help="a run's checkpoint.pt, a .safetensors weights file, or published weights by name "
        "(torchvision:mobilenet_v2.IMAGENET1K_V1)",
    )
    parser.add_argument("--data", default=None, help="data spec (default: the run's own)")
    parser.add_argument(
        "--predictions",
        default=None,
        help="write FILE.csv (path, label, prediction, confidence) and FILE.confusion.png",
    )
    parser.add_argument(
        "--batch-size", type=cli_types.positive, default=128, help="images per forward"
    )
    parser.add_argument("--data-root", default=None, help="where downloads go")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--workers", type=cli_types.integer(0, 256), default=0, help="DataLoader processes"
    )
    parser.add_argument(
        "--skip-bad-images", action="store_true", help="skip and count unreadable images"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from mobilenets.training.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        predictions=args.predictions,
        batch_size=args.batch_size,
        data_root=args.data_root,
        skip_bad_images=args.skip_bad_images,
        progress=not args.json,
        device=args.device,
        workers=args.workers,
    )
    if hasattr(result, "ap50"):  # a detector: COCO box AP
        if args.json:
            cli_types.emit(json.dumps(result.to_dict(), indent=2))
            return 0
        cli_types.emit(
            f"mAP {result.map:.2f}%  AP50 {result.ap50:.2f}%  AP75 {result.ap75:.2f}%  loss "
            f"{result.loss:.4f}  on {result.images:,} images ({result.boxes:,} boxes)"
        )
        return 0
    if hasattr(result, "miou"):  # a segmenter: the IoU table
        if args.json:
            cli_types.emit(json.dumps(result.to_dict(result.classes), indent=2))
            return 0
        for name, iou in zip(result.classes, result.iou, strict=True):
            cli_types.emit(f"IoU {display(name):<24} {iou:6.2f}%")
        cli_types.emit(
            f"mIoU {result.miou:.2f}%  pixel accuracy {result.pixel_acc:.2f}%  loss "
            f"{result.loss:.4f}  on {result.images:,} images ({result.pixels:,} pixels)"
        )
        return 0
    if args.json:
        cli_types.emit(json.dumps(result.to_dict(), indent=2))
        return 0
    cli_types.emit(
        f"top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%  loss {result.loss:.4f}  "
        f"on {result.images:,} images" + (f" ({result.skipped} skipped)" if result.skipped else "")
    )
    if args.predictions:
        print(f"wrote {args.predictions} and its confusion matrix PNG", file=sys.stderr)
    return 0
