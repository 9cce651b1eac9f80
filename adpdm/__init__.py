"""adpdm: accurate data-free post-training quantization of diffusion models."""

from .checkpoint import load_quantized, save_quantized
from .config import QuantConfig
from .context import current_step, step_context
from .quantize import calibrate, freeze, get_state, quantization_disabled, quantize_model
from .state import QuantState

__version__ = "0.13.0"

__all__ = [
    "QuantConfig",
    "QuantState",
    "__version__",
    "calibrate",
    "current_step",
    "freeze",
    "get_state",
    "load_quantized",
    "quantization_disabled",
    "quantize_model",
    "quantize_pipeline",
    "save_quantized",
    "step_context",
]


def __getattr__(name: str):  # noqa: ANN202
    # imported on first use: the pipeline support pulls in the calibration and reconstruction code
    if name == "quantize_pipeline":
        from .pipelines import quantize_pipeline

        return quantize_pipeline
    raise AttributeError(f"module 'adpdm' has no attribute {name!r}")
