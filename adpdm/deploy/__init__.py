"""Integer deployment: ONNX QDQ export of frozen quantized UNets and an ONNX Runtime denoiser."""

from .calibrate import CalibrationSpec
from .onnx_export import ExportResult, export_float, export_onnx
from .runtime import OnnxDenoiser, RuntimeOptions

__all__ = ["CalibrationSpec", "ExportResult", "OnnxDenoiser", "RuntimeOptions", "export_float", "export_onnx"]
