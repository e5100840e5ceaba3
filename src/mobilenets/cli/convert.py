"""Convert a torchvision or timm state dict, a Keras file, a TF Object Detection API
SSDLite frozen graph, or one of our checkpoints to safetensors."""

from __future__ import annotations

import argparse
import sys

from mobilenets.catalog import WEIGHT_SOURCES as SOURCES
from mobilenets.cli import _common as cli_types
from mobilenets.errors import ConfigError

EXAMPLES = """\
  mobilenets convert --from torchvision mobilenet_v2-b0353104.pth --model mobilenet_v2 \\
      --out v2.safetensors
  mobilenets convert --from checkpoint runs/v1/checkpoint.pt --out v1.safetensors
  mobilenets convert torchvision:mobilenet_v2.IMAGENET1K_V1 --out v2.safetensors
  mobilenets convert --from keras mobilenet_1_0_224_tf.h5 --out v1.safetensors
  mobilenets convert --from tf-ssd frozen_inference_graph.pb --classes person \\
      --out pedestrians.safetensors
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source",
        default=None,
        choices=(*SOURCES, "checkpoint"),
        help="where SRC comes from (not needed when SRC is a weights name)",
    )
    parser.add_argument(
        "src",
        metavar="SRC",
        help="a state dict the user downloaded (.pth, .pt, .bin, .safetensors), a Keras "
        "applications file (.h5, .weights.h5, .keras), a TF Object Detection API "
        "SSDLite-MobileNetV2 frozen_inference_graph.pb, a mobilenets checkpoint.pt, or "
        "published weights by name "
        "(torchvision:mobilenet_v2.IMAGENET1K_V1, timm:mobilenetv3_large_100.ra_in1k)",
    )
    parser.add_argument(
        "--model",
        default="",
        help="torchvision builder name (mobilenet_v2, mobilenet_v3_large, ...), timm model "
        "name (mobilenetv3_large_100, tf_mobilenetv3_large_100, ...); with --from keras "
        "optional (read from the file's layer names, checked when given)",
    )
    parser.add_argument(
        "--width-mult",
        type=cli_types.width_mult,
        default=None,
        help="torchvision's width_mult of the source (default 1); with --from keras, read "
        "from the layers' shapes unless given",
    )
    parser.add_argument(
        "--reduced-tail", action="store_true", help="torchvision's reduced_tail of the source"
    )
    parser.add_argument(
        "--eval-resize",
        type=cli_types.integer(32, 8192),
        default=None,
        help="short side before the 224 center crop at evaluation (default: torchvision's "
        "figure for its own weights files, else 256)",
    )
    parser.add_argument(
        "--classes",
        type=cli_types.comma_list(str),
        default=(),
        help="with --from tf-ssd: the detector's class names, comma-separated, background "
        "not listed (a frozen graph holds none; default 1, 2, ...)",
    )
    parser.add_argument("--out", required=True, help="FILE.safetensors")


def run(args: argparse.Namespace) -> int:
    from mobilenets.weights import convert_file, is_name

    if is_name(args.src):
        args.source = None
    elif args.source is None:
        raise ConfigError(
            f"--from {{{','.join((*SOURCES, 'checkpoint'))}}} is required unless SRC is a "
            "weights name such as torchvision:mobilenet_v2.IMAGENET1K_V1"
        )
    elif args.source not in ("checkpoint", "keras", "tf-ssd") and not args.model:
        raise ConfigError(f"--model is required with --from {args.source}")
    info = convert_file(
        args.source,
        args.src,
        args.out,
        model=args.model,
        width_mult=args.width_mult,
        reduced_tail=args.reduced_tail,
        eval_resize=args.eval_resize,
        classes=args.classes,
    )
    print(
        f"wrote {args.out}: {info.model} {info.kwargs}, {len(info.classes)} classes, "
        f"input {info.input_size} px (from {info.source})",
        file=sys.stderr,
    )
    return 0
