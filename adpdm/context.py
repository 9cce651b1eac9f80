"""The sampling-step context: how the current step index reaches the quantizers.

Timestep-grouped quantizers need to know which step of the deployment schedule the
denoiser is evaluating. The sampling loop says so explicitly::

    for k, t in enumerate(scheduler.timesteps):
        with adpdm.step_context(k):
            eps = unet(x, t).sample

A per-layer call counter would break under classifier-free guidance, batched steps or a
different sampler; an explicit context does not. ``k`` may also be a tensor of shape
``(B,)`` holding one step index per sample (used when calibration batches mix steps).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

StepIndex = int | torch.Tensor

_CURRENT_STEP: contextvars.ContextVar[StepIndex | None] = contextvars.ContextVar("adpdm_current_step", default=None)


@contextlib.contextmanager
def step_context(step: StepIndex) -> Iterator[None]:
    """Declare the sampling-step index ``step`` (0-based) for the enclosed denoiser calls.

    Args:
        step: an ``int`` in ``[0, K)`` or a LongTensor of shape ``(B,)`` (one index per sample).
    """
    if isinstance(step, torch.Tensor):
        if step.dtype.is_floating_point or step.dim() != 1:
            raise ValueError(f"step tensor must be a 1-d integer tensor, got {step.dtype} {tuple(step.shape)}")
        if step.numel() and int(step.min()) < 0:
            raise ValueError("step indices must be >= 0")
    elif isinstance(step, int) and not isinstance(step, bool):
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
    else:
        raise TypeError(f"step must be an int or a LongTensor, got {type(step).__name__}")
    token = _CURRENT_STEP.set(step)
    try:
        yield
    finally:
        _CURRENT_STEP.reset(token)


def current_step() -> StepIndex | None:
    """The step index set by the innermost :func:`step_context`, or ``None`` outside one."""
    return _CURRENT_STEP.get()
