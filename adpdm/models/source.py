"""What a quantized checkpoint knows of the model it came from, and the checks made with it.

A checkpoint saved by ``adpdm quantize`` records a :class:`ModelSource`: the spec it was loaded
from, a fingerprint of the FP UNet (config and weights), the scheduler config, the classes and
the calibrated number of sampling steps K. Every command that takes ``--quantized DIR`` then
needs nothing else, and :func:`resolve_model` refuses, before any work, a ``--model`` that is
not the source or a ``--steps`` other than K, saying what to pass instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .loading import KINDS, DiffusionModel, is_embedded, load_model

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "embedded:mnist"
DEFAULT_STEPS = 100


def unet_fingerprint(unet: nn.Module) -> str:
    """SHA-256 of a UNet's config (public keys) and of its weights, as float32, in key order."""
    h = hashlib.sha256()
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for key, value in sorted(unet.state_dict().items()):
        t = value.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{key}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@dataclass
class ModelSource:
    """The FP model a checkpoint was calibrated on.

    Args:
        spec: ``embedded:NAME``, the pipeline folder (absolute) or the hub id.
        kind: ``unconditional``, ``class`` or ``text``.
        fingerprint: :func:`unet_fingerprint` of the FP UNet.
        scheduler_config: the diffusers scheduler config of the calibration sampler.
        num_steps: the calibrated number of sampling steps K.
        num_classes, null_class: the labels of a class-conditional model.
    """

    spec: str
    kind: str
    fingerprint: str
    scheduler_config: dict
    num_steps: int
    num_classes: int | None = None
    null_class: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ModelSource.kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"ModelSource.num_steps must be a positive integer, got {self.num_steps!r}")

    @classmethod
    def of(cls, model: DiffusionModel, num_steps: int) -> ModelSource:
        """Describe ``model`` (call before quantizing its UNet in place)."""
        spec = model.spec
        if not is_embedded(spec) and Path(spec).is_dir():
            spec = str(Path(spec).resolve())
        return cls(spec, model.kind, unet_fingerprint(model.unet), dict(model.scheduler_config), num_steps,
                   model.num_classes, model.null_class)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSource:
        try:
            return cls(**data)
        except TypeError as err:
            raise ValueError(f"bad model source record: {err}") from err


def _as_json(config: dict) -> Any:
    return json.loads(json.dumps(dict(config), sort_keys=True, default=str))


@dataclass
class Resolved:
    """The model a command runs, with the checkpoint's record when ``--quantized`` was given."""

    model: DiffusionModel
    steps: int
    source: ModelSource | None = None


def resolve_model(
    spec: str | None, quantized: str | Path | None = None, steps: int | None = None, null_class: int | None = None
) -> Resolved:
    """Load the model of a command, checking it against the checkpoint ``quantized`` first.

    Args:
        spec: ``--model`` (``None``: the checkpoint's source, else ``embedded:mnist``).
        quantized: ``--quantized DIR`` or ``None``.
        steps: ``--steps`` (``None``: the checkpoint's K, else 100).
        null_class: ``--null-class`` (``None``: the checkpoint's, else none).

    Raises:
        ValueError: ``steps`` is not the checkpoint's K, or ``spec`` is not the model the
            checkpoint was quantized from (nothing has been sampled yet).
    """
    if quantized is None:
        return Resolved(load_model(spec or DEFAULT_MODEL, null_class), steps or DEFAULT_STEPS)
    from ..checkpoint import read_checkpoint_info

    source, k = read_checkpoint_info(quantized)
    if steps is not None and steps != k:
        raise ValueError(f"{quantized} was calibrated for K = {k} sampling steps; pass --steps {k} or leave "
                         f"--steps out (a quantized model samples with the schedule it was calibrated on)")  # fmt: skip
    if source is None:  # a checkpoint from before the source was recorded: the old default model
        if spec is None:
            logger.warning("%s does not record its model; assuming %s (pass --model otherwise)", quantized,
                           DEFAULT_MODEL)  # fmt: skip
        return Resolved(load_model(spec or DEFAULT_MODEL, null_class), k)
    if null_class is None:
        null_class = source.null_class
    try:
        model = load_model(spec or source.spec, null_class)
    except (ValueError, FileNotFoundError) as err:
        if spec is not None:
            raise
        raise ValueError(f"{quantized} was quantized from {source.spec!r}, which cannot be loaded here ({err}); "
                         "pass --model with that pipeline's folder") from err  # fmt: skip
    fingerprint = unet_fingerprint(model.unet)
    if fingerprint != source.fingerprint:
        ids = f"UNet fingerprint {source.fingerprint[:12]}, got {fingerprint[:12]}"
        if spec is None:
            raise ValueError(f"{source.spec} has changed since {quantized} was quantized from it ({ids}): "
                             "quantize the model again, or pass --model with the original")  # fmt: skip
        raise ValueError(f"--model {spec} is not the model {quantized} was quantized from ({source.spec!r}, {ids}): "
                         f"pass --model {source.spec} or leave --model out")  # fmt: skip
    if _as_json(model.scheduler_config) != _as_json(source.scheduler_config):
        logger.warning("%s has another scheduler config than the calibration; sampling with the calibration's", spec)
        model.scheduler_config = dict(source.scheduler_config)
    return Resolved(model, k, source)
