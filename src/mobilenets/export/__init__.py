"""Deployment: BN folding, ONNX export, ONNX Runtime inference, int8 quantization."""

from mobilenets.export.fold_bn import fold_bn
from mobilenets.export.onnx import export_onnx
from mobilenets.export.quantize import QuantReport, quantize_onnx

__all__ = [
    "QuantReport",
    "export_onnx",
    "fold_bn",
    "quantize_onnx",
]
