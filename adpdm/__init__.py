"""adpdm: accurate data-free post-training quantization of diffusion models."""

from .context import current_step, step_context

__version__ = "0.1.0"

__all__ = ["__version__", "current_step", "step_context"]
