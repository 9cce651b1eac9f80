"""Output ranges of the quantized convolutions, recorded from the frozen model's own sampler.

ONNX Runtime runs a Conv in int8 (``QLinearConv``) only when its output is re-quantized:
the QDQ fusion needs ``DQ -> Conv -> Q``. Our quantizers sit on layer inputs, so the export
adds an 8-bit output quantizer per convolution, one (scale, zero point) per exported graph,
from the min / max of that convolution's outputs over a few trajectories of the frozen
model sampled with the deployment schedule (data-free, like the calibration itself).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ..context import current_step
from ..sampling import SamplerConfig, sample
from ..tensor.fake_quant import qparams_from_range

logger = logging.getLogger(__name__)


@dataclass
class CalibrationSpec:
    """How to sample the trajectories that calibrate the output quantizers.

    Args:
        scheduler_config: the model's diffusers scheduler config.
        num_samples: trajectories (default 4).
        num_classes: classes of a conditional model (``None``: unconditional).
        null_class: label of the unconditional branch (classifier-free guidance).
        guidance_scale: guidance of the sampler (default 1.0).
        seed: seed of the common random numbers (default 1234, away from evaluation seeds).
    """

    scheduler_config: dict
    num_samples: int = 4
    num_classes: int | None = None
    null_class: int | None = None
    guidance_scale: float = 1.0
    seed: int = 1234


@dataclass
class OutputQParams:
    """Per-graph uint8 (scale, zero point) of one layer's output."""

    scales: list[float]
    zeros: list[int]


def record_output_ranges(
    unet: nn.Module, names: Iterable[str], step_to_graph: list[int], num_graphs: int, spec: CalibrationSpec
) -> dict[str, OutputQParams]:
    """uint8 output quantization parameters of the layers ``names``, per exported graph."""
    names = list(names)
    lo = {n: torch.full((num_graphs,), float("inf")) for n in names}
    hi = {n: torch.full((num_graphs,), float("-inf")) for n in names}

    def hook(name: str):  # noqa: ANN202
        def record(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
            step = current_step()
            g = step_to_graph[step] if step_to_graph else 0
            lo[name][g] = min(lo[name][g], float(out.min()))
            hi[name][g] = max(hi[name][g], float(out.max()))

        return record

    handles = [unet.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    num_steps = max(1, len(step_to_graph))
    cfg = SamplerConfig(num_steps=num_steps, batch_size=spec.num_samples, seed=spec.seed,
                        guidance_scale=spec.guidance_scale)  # fmt: skip
    try:
        sample(unet, spec.scheduler_config, spec.num_samples, cfg, num_classes=spec.num_classes,
               null_class=spec.null_class, progress=False)  # fmt: skip
    finally:
        for h in handles:
            h.remove()
    params = {}
    for n in names:
        seen = torch.isfinite(lo[n])
        if not bool(seen.all()):
            # a graph that no sampling step uses: borrow the widest range seen
            lo[n] = torch.where(seen, lo[n], lo[n][seen].min())
            hi[n] = torch.where(seen, hi[n], hi[n][seen].max())
        scale, zero = qparams_from_range(lo[n], hi[n], 8, symmetric=False)
        params[n] = OutputQParams(scale.tolist(), [int(z) for z in zero.tolist()])
    logger.info("recorded output ranges of %d layers over %d sampling steps", len(names), num_steps)
    return params
