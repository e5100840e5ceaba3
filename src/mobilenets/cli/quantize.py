"""int8-quantize an exported ONNX model, calibrated on real images; compare with fp32."""

from __future__ import annotations

import argparse
import json
import sys

from mobilenets.cli import _common as cli_types
from mobilenets.cpu import TARGET_CPUS
from mobilenets.errors import ConfigError
from mobilenets.export.choices import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION,
    DEFAULT_MARGIN,
    MIN_AGREEMENT,
    MIN_CONFIDENT_AGREEMENT,
    ONNX_QUANTIZERS,
)

EXAMPLES = """\
  mobilenets quantize runs/v1/model.onnx --calib-data digits --out runs/v1/model.int8.onnx
  mobilenets quantize model.onnx --calib-data path/to/folder --keep-fp32 '*/se/*' \\
      --out model.int8.onnx
  mobilenets export torchvision:mobilenet_v2.IMAGENET1K_V1 --out v2.onnx
  mobilenets quantize v2.onnx --calib-data photos --out v2.int8.onnx   # agreement guard
  mobilenets quantize v2.onnx --calib-data photos --quantizer onnxruntime --calib-method minmax \\
      --out v2.ort.int8.onnx   # ONNX Runtime's own quantizer
  mobilenets quantize torchvision:mobilenet_v2.IMAGENET1K_V1 --calib-data photos:large \\
      --out v2.int8.xml   # OpenVINO IR by NNCF
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="SOURCE",
        help="an fp32 .onnx from `export`; or, with --out FILE.pte or FILE.xml, a checkpoint, "
        "a .safetensors file or a weights name (ExecuTorch int8 through PT2E and XNNPACK; an "
        "OpenVINO IR through NNCF)",
    )
    parser.add_argument(
        "--calib-data",
        default="digits",
        help="data spec: its train split calibrates, its val split evaluates",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="FILE.int8.onnx (ONNX Runtime QDQ), FILE.pte (ExecuTorch) or FILE.xml (OpenVINO, "
        "NNCF)",
    )
    parser.add_argument(
        "--calib-images", type=cli_types.positive, default=256, help="calibration images"
    )
    parser.add_argument(
        "--quantizer",
        choices=ONNX_QUANTIZERS,
        default=None,
        help="who quantizes a .onnx: nncf (with bias correction, made for ONNX Runtime's fused "
        "kernels) or onnxruntime (its own); default: nncf for a classifier, onnxruntime for V3 "
        "(hard-swish), a segmenter, a detector or with --calib-method",
    )
    parser.add_argument(
        "--calib-method",
        choices=CALIBRATION_METHODS,
        default=None,
        help=f"ONNX Runtime's activation calibration (default: {DEFAULT_CALIBRATION}; minmax "
        "for a detector)",
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
        default=None,
        metavar="PATTERN",
        help="ONNX node-name patterns to leave in fp32, e.g. '/stem/*' '*/se/*' (default: none; "
        "a detector's prediction layers, '/head/*')",
    )
    parser.add_argument(
        "--margin",
        type=cli_types.number(-100, 100),
        default=DEFAULT_MARGIN,
        help="largest acceptable top-1 drop in points (default 2)",
    )
    parser.add_argument(
        "--target-cpu",
        choices=TARGET_CPUS,
        default="auto",
        help="the CPU that will run the .onnx or .xml, which decides its int8: vnni (x86 with "
        "VNNI: 8-bit weights), avx2 (x86 without VNNI: 7-bit weights, which cannot saturate its "
        "16-bit sums), arm (8-bit); auto is this machine",
    )
    parser.add_argument("--data-root", default=None, help="where downloads go")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from mobilenets.export.quantize import quantize_onnx, quantize_openvino, quantize_pte

    common = {
        "calib_images": args.calib_images,
        "min_agreement": args.min_agreement,
        "min_confident_agreement": args.min_confident_agreement,
        "margin": args.margin,
        "data_root": args.data_root,
    }
    if args.out.endswith((".pte", ".xml")):
        runtime = "ExecuTorch's XNNPACK" if args.out.endswith(".pte") else "OpenVINO"
        pte = args.out.endswith(".pte")
        if any(v is not None for v in (args.keep_fp32, args.calib_method, args.quantizer)):
            raise ConfigError(
                f"--keep-fp32, --calib-method and --quantizer are for .onnx; not for "
                f"{args.out.rsplit('.', 1)[-1]} ({runtime} quantizes with its own settings)"
            )
        if pte and args.target_cpu != "auto":
            raise ConfigError(
                "--target-cpu is not for pte (ExecuTorch's XNNPACK chooses its int8 kernels for "
                "the CPU it runs on)"
            )
        if pte:
            report = quantize_pte(args.model, args.out, args.calib_data, **common)
        else:
            report = quantize_openvino(
                args.model, args.out, args.calib_data, target_cpu=args.target_cpu, **common
            )
    else:
        report = quantize_onnx(
            args.model,
            args.out,
            args.calib_data,
            calib_method=args.calib_method,
            quantizer=args.quantizer,
            keep_fp32=args.keep_fp32,
            target_cpu=args.target_cpu,
            **common,
        )
    cli_types.emit(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    from mobilenets.export.recommend import recommend
    from mobilenets.saved.loader import exported_info

    advice = recommend(exported_info(report.path).model)  # --out, or the rejected file
    if advice:
        print(advice, file=sys.stderr)
    return 0 if report.ok else 1
