"""Deployment: BN folding, ONNX export, ONNX Runtime inference, int8 quantization."""

from mobilenets.export.fold_bn import fold_bn
from mobilenets.export.onnx import OnnxClassifier, export_onnx, onnx_metadata
from mobilenets.export.quantize import QuantReport, quantize_onnx

__all__ = [
    "OnnxClassifier",
    "QuantReport",
    "export_onnx",
    "fold_bn",
    "onnx_metadata",
    "quantize_onnx",
]
