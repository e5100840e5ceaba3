"""The choices and defaults of the deployment commands (``export``, ``quantize``, ``bench``),
importable without torch or onnx so that their ``--help`` starts at once."""

from __future__ import annotations

#: ONNX exporters: TorchScript is the default (0.2–0.3 s against the dynamo exporter's 2.4–7 s,
#: equal outputs; benchmarks/onnx_exporters.py).
EXPORTERS = ("torchscript", "dynamo")
#: Export formats by the suffix that names them: ONNX, ExecuTorch (XNNPACK delegate), OpenVINO IR.
FORMATS = {".onnx": "onnx", ".pte": "pte", ".xml": "openvino"}
FORMAT_CHOICES = tuple(FORMATS.values())

#: bench's backends. ``executorch*`` need the [edge] extra, ``openvino*`` the [openvino] one
#: (a backend whose package is missing is skipped with one line); OpenVINO runs fp32 unless the
#: backend says bf16; ``*_int8`` run our int8 (QDQ for ORT and OpenVINO, PT2E for ExecuTorch).
BACKENDS = (
    "eager",
    "channels_last",
    "compile",
    "ort",
    "ort_int8",
    "executorch",
    "executorch_int8",
    "openvino",
    "openvino_bf16",
    "openvino_int8",
)
DEFAULT_BACKENDS = (
    "eager",
    "channels_last",
    "ort",
    "ort_int8",
    "executorch",
    "executorch_int8",
    "openvino",
    "openvino_int8",
)
#: Backends that run only our networks (they need the network's record to export).
OURS_ONLY = ("executorch", "executorch_int8", "openvino", "openvino_bf16", "openvino_int8")
DEFAULT_MODELS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")

DEFAULT_MARGIN = 2.0  # top-1 points
MIN_AGREEMENT = 85.0  # % of held-out images where int8's top-1 is fp32's
MIN_CONFIDENT_AGREEMENT = 98.0  # the same where fp32's top probability is ≥ CONFIDENT
CONFIDENT = 0.5
MIN_CONFIDENT_IMAGES = 20  # fewer confident images: that figure is reported, not guarded
#: ONNX Runtime's calibration methods, by our name. Percentile (99.999th, ORT's default) agreed
#: with fp32 best on the real MobileNetV2 (benchmarks/quantize_calibration.py); with
#: onnxruntime 1.32, Entropy wrote the same scales as MinMax.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION = "percentile"  # measured best: benchmarks/quantize_calibration.py
#: quantize's int8 quantizers for an ``.onnx`` file, and each task's default (benchmarks/
#: nncf_onnx.py, VNNI Xeon). On the real V2 (260 photo crops) NNCF made for ONNX Runtime agreed
#: with fp32 on 88.46% (100% where confident; the AVX2 scheme 86.15%, 100%), ONNX Runtime's own
#: on 69.23% (98.67%), both in 3.27 ms (fp32 5.63). On the digits V1 and V2 both keep within
#: 1.4 points of fp32. A detector keeps ONNX Runtime's, with its prediction layers in
#: fp32, as measured on the trees (``DETECTOR_DEFAULTS`` in export/quantize.py). A segmenter
#: keeps it too: NNCF 3.4's ONNX bias correction fails on the LR-ASPP graph, whose head reads a
#: block's inner tensor (``KeyError`` in its ``get_input_name``).
ONNX_QUANTIZERS = ("nncf", "onnxruntime")
DEFAULT_QUANTIZERS = {
    "classification": "nncf",
    "segmentation": "onnxruntime",
    "detection": "onnxruntime",
}
#: A graph with these ops (V3's hard-swish and SE gate) gets ONNX Runtime's quantizer by
#: default: NNCF quantizes a convolution's output only after the activation that follows it,
#: which ONNX Runtime cannot fuse, so the convolutions run in float (V3-Small, 224 px, batch 1,
#: 1 thread: 5.61 ms against ONNX Runtime's int8 2.11 and fp32 1.74).
NNCF_UNFUSED_OPS = frozenset({"HardSwish", "HardSigmoid"})
