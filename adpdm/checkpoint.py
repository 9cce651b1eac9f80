"""Quantized checkpoints: safetensors tensors plus JSON, integer weights (4-bit packed).

A checkpoint folder holds:
    config.json          the diffusers model config (rebuilds the architecture)
    quant_config.json    format version, model class, QuantConfig, packing table, sha256, and
                         the source model (``adpdm.models.source.ModelSource``) when known
    model.safetensors    every persistent tensor of the frozen model; weight codes of <= 4 bits
                         are packed two per byte

Nothing is unpickled; every file is validated before use.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import QuantConfig
from .models.source import ModelSource
from .models.unet import SUPPORTED_UNETS, check_supported, prepare_denoiser
from .quantize import act_quantizers, get_config, get_state, quant_layers, quantize_model, set_state
from .state import QuantState
from .tensor.packing import pack_int4, unpack_int4

logger = logging.getLogger(__name__)

FORMAT = "adpdm-quantized"
FORMAT_VERSION = 1
MODEL_CONFIG = "config.json"
QUANT_META = "quant_config.json"
TENSORS = "model.safetensors"


class CheckpointError(ValueError):
    """A quantized checkpoint that is missing, truncated, corrupted or inconsistent."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_quantized(model: nn.Module, out_dir: str | Path, source: ModelSource | None = None) -> Path:
    """Write a frozen quantized UNet to ``out_dir`` (created if needed); returns the folder.

    ``source`` (from :meth:`ModelSource.of`, taken before quantizing) lets every command find
    the model, its schedule and its K from the checkpoint alone.

    Example::

        adpdm.freeze(qunet)
        adpdm.save_quantized(qunet, "out/")
    """
    check_supported(model)
    cfg = get_config(model)
    if get_state(model) != QuantState.FROZEN:
        raise ValueError("only frozen models can be saved: call adpdm.freeze(model) first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors, packed = {}, {}
    bits_of = {f"{name}.weight_codes": layer.weight_quant for name, layer in quant_layers(model)}
    for key, value in model.state_dict().items():
        wq = bits_of.get(key)
        if wq is not None and wq.bits <= 4:
            packed[key] = {
                "shape": list(value.shape),
                "offset": wq.qmin,
                "dtype": str(value.dtype).split(".")[-1],
            }
            value = pack_int4((value.to(torch.int16) - wq.qmin).to(torch.uint8))
        tensors[key] = value.detach().cpu().contiguous()
    save_file(tensors, out / TENSORS, metadata={"format": FORMAT})
    (out / MODEL_CONFIG).write_text(model.to_json_string())
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "quant_config": cfg.to_dict(),
        "packed": packed,
        "sha256": _sha256(out / TENSORS),
    }
    if source is not None:
        if source.num_steps != cfg.num_steps:
            raise ValueError(f"source.num_steps={source.num_steps} differs from the model's K = {cfg.num_steps}")
        meta["source"] = source.to_dict()
    (out / QUANT_META).write_text(json.dumps(meta, indent=2))
    logger.info("saved quantized model to %s (%d bytes of tensors)", out, (out / TENSORS).stat().st_size)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: not an adpdm quantized checkpoint folder")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the checkpoint is corrupted") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return data


def _read_meta(folder: Path) -> dict[str, Any]:
    meta = _read_json(folder / QUANT_META)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{folder / QUANT_META} is not an adpdm checkpoint (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format version {meta.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
        )
    if meta.get("model_class") not in SUPPORTED_UNETS:
        raise CheckpointError(f"unsupported model class {meta.get('model_class')!r} in {folder / QUANT_META}")
    return meta


def read_checkpoint_info(path: str | Path) -> tuple[ModelSource | None, int]:
    """The source model (``None`` for checkpoints that predate it) and the calibrated K of a
    checkpoint folder, read from its JSON alone (no tensors are loaded)."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder: pass a folder written by `adpdm quantize`")
    meta = _read_meta(folder)
    try:
        k = int(QuantConfig.from_dict(meta.get("quant_config", {})).num_steps)
        source = ModelSource.from_dict(meta["source"]) if "source" in meta else None
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"bad record in {folder / QUANT_META}: {err}") from err
    return source, k


def _read_tensors(folder: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = folder / TENSORS
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    if _sha256(path) != meta.get("sha256"):
        raise CheckpointError(f"{path} does not match the checksum in {QUANT_META}: the file is truncated or corrupted")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
    for key, info in meta.get("packed", {}).items():
        if key not in tensors:
            raise CheckpointError(f"packed tensor {key} is missing from {path}")
        try:
            codes = unpack_int4(tensors[key], tuple(info["shape"])).to(torch.int16) + int(info["offset"])
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"packed tensor {key} is inconsistent with {QUANT_META}: {err}") from err
        tensors[key] = codes.to(getattr(torch, info["dtype"]))
    return tensors


def load_quantized(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """Rebuild a frozen quantized UNet from a folder written by :func:`save_quantized`.

    The outputs are bit-identical to those of the model that was saved.

    Example::

        qunet = adpdm.load_quantized("out/")
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder")
    meta = _read_meta(folder)
    try:
        cfg = QuantConfig.from_dict(meta.get("quant_config", {}))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"bad quant_config in {folder / QUANT_META}: {err}") from err
    cls = SUPPORTED_UNETS[meta["model_class"]]
    try:
        model = prepare_denoiser(cls.from_config(_read_json(folder / MODEL_CONFIG)))
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"cannot build {cls.__name__} from {folder / MODEL_CONFIG}: {err}") from err
    quantize_model(model, cfg)
    tensors = _read_tensors(folder, meta)
    for name, layer in quant_layers(model):
        layer.prepare_frozen(layer.weight.shape)
        if f"{name}.smooth" in tensors:  # smoothed layers (QuantConfig.smoothing)
            layer.set_smoothing(torch.ones(layer.weight_codes.shape[1]))
    for _, q in act_quantizers(model):
        q.freeze()
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"the tensors in {folder} do not match the model described by its config: {err}") from err
    for _, layer in quant_layers(model):
        layer.refresh_weight()
    set_state(model, QuantState.FROZEN)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    return model.to(device) if device is not None else model
