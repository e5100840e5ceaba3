"""int8-quantize an exported ONNX model, calibrated on real images; compare with fp32."""

from __future__ import annotations

import argparse
import json

from mobilenets.cli import _common as cli_types
from mobilenets.export.choices import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION,
    DEFAULT_MARGIN,
    MIN_AGREEMENT,
    MIN_CONFIDENT_AGREEMENT,
)

EXAMPLES = """\
  mobilenets quantize runs/v1/model.onnx --calib-data digits --out runs/v1/model.int8.onnx
  mobilenets quantize model.onnx --calib-data path/to/folder --keep-fp32 '*/se/*' \\
      --out model.int8.onnx
  mobilenets export torchvision:mobilenet_v2.IMAGENET1K_V1 --out v2.onnx
  mobilenets quantize v2.onnx --calib-data photos --out v2.int8.onnx   # agreement guard
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="FILE.onnx", help="an fp32 model from `export`")
    parser.add_argument(
        "--calib-data",
        default="digits",
        help="data spec: its train split calibrates, its val split evaluates",
    )
    parser.add_argument("--out", required=True, help="FILE.int8.onnx")
    parser.add_argument(
        "--calib-images", type=cli_types.positive, default=256, help="calibration images"
    )
    parser.add_argument(
        "--calib-method",
        choices=CALIBRATION_METHODS,
        default=DEFAULT_CALIBRATION,
        help="ONNX Runtime's activation calibration",
    )
    parser.add_argument(
        "--min-agreement",
        type=cli_types.number(0, 100),
        default=MIN_AGREEMENT,
        help="agreement guard (used when the data's classes are not the model's): the least "
        "%% of held-out images where int8's top-1 is fp32's",
    )
    parser.add_argument(
        "--min-confident-agreement",
        type=cli_types.number(0, 100),
        default=MIN_CONFIDENT_AGREEMENT,
        help="agreement guard: the same where fp32 is ≥ 50%% confident",
    )
    parser.add_argument(
        "--keep-fp32",
        nargs="*",
        default=[],
        metavar="PATTERN",
        help="ONNX node-name patterns to leave in fp32, e.g. '/stem/*' '*/se/*'",
    )
    parser.add_argument(
        "--margin",
        type=cli_types.number(-100, 100),
        default=DEFAULT_MARGIN,
        help="largest acceptable top-1 drop in points (default 2)",
    )
    parser.add_argument("--data-root", default=None, help="where downloads go")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from mobilenets.export.quantize import quantize_onnx

    report = quantize_onnx(
        args.model,
        args.out,
        args.calib_data,
        calib_images=args.calib_images,
        calib_method=args.calib_method,
        min_agreement=args.min_agreement,
        min_confident_agreement=args.min_confident_agreement,
        keep_fp32=args.keep_fp32,
        margin=args.margin,
        data_root=args.data_root,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1
