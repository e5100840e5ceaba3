"""Deployment: BN folding, export (ONNX, ExecuTorch, OpenVINO), int8 quantization.

The names below are imported on first use (PEP 562): :mod:`mobilenets.export.choices`, which the
command line reads to build its flags, imports neither torch nor onnx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenets.lazy import lazy_getattr

__all__ = [
    "QuantReport",
    "export_model",
    "export_onnx",
    "fold_bn",
    "quantize_onnx",
    "quantize_pte",
]
__getattr__ = lazy_getattr(
    __name__,
    {
        "QuantReport": "mobilenets.export.quantize",
        "export_model": "mobilenets.export.model_export",
        "quantize_pte": "mobilenets.export.quantize",
        "export_onnx": "mobilenets.export.onnx",
        "fold_bn": "mobilenets.export.folding",
        "quantize_onnx": "mobilenets.export.quantize",
    },
)

if TYPE_CHECKING:
    from mobilenets.export.folding import fold_bn
    from mobilenets.export.model_export import export_model
    from mobilenets.export.onnx import export_onnx
    from mobilenets.export.quantize import QuantReport, quantize_onnx, quantize_pte
