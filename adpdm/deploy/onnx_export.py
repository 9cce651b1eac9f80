"""Export a frozen quantized UNet as ONNX QDQ graphs, one per activation configuration.

A model with G timestep groups has G activation configurations that differ only in their
activation scales and zero points. They export as one graph ``graph.onnx`` whose differing
constants are initializers of their own, with each group's values in ``groups.safetensors``
(ONNX Runtime replaces the initializers when it opens one session per group); where the G
traced graphs differ in more than those constants, as G graphs ``graph_<g>.onnx``. Either way
one weight file ``weights.bin`` holds the int8 weights and int32 biases, and ``deploy.json`` the
step -> group table that :class:`adpdm.deploy.OnnxDenoiser` follows.

Example::

    result = export_onnx(adpdm.load_quantized("out/w8a8"), "out/w8a8-onnx")
    denoiser = OnnxDenoiser("out/w8a8-onnx")
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from diffusers import DiTTransformer2DModel, PixArtTransformer2DModel, UNet2DConditionModel, UNet2DModel
from safetensors.torch import save_file
from torch import nn

from ..models.unet import TEXT_DENOISERS, prepare_denoiser
from ..nn.layers import QuantConv2d
from ..quantize import get_config, quant_layers
from .calibrate import CalibrationSpec, OutputQParams, record_output_ranges
from .export_mode import configurations, export_mode, float_mode, int8_weight, resolve_format
from .external import save_shared
from .graph import needs_opset, opset_of, share_graphs, slim, store_int8_weights, upgrade_opset

logger = logging.getLogger(__name__)

FORMAT = "adpdm-onnx"
FORMAT_VERSION = 2  # 2: one graph with per-group values (GROUP_VALUES); 1: one graph per group
READABLE_VERSIONS = (1, 2)
GROUP_VALUES = "groups.safetensors"
MANIFEST = "deploy.json"
WEIGHTS = "weights.bin"
OPSET = 17
KEEP_FLOAT_OUTPUT = ("conv_out",)
PREFIX = "unet"  # the wrapper's attribute name: exported node names start with /unet/


class _Denoiser(nn.Module):
    """``(sample, timestep, *conditions) -> eps`` with plain tensors in and out. ``conditions`` reach the model
    by the names of the graph's further inputs: class labels; text embeddings, and PixArt's padding mask
    (1 = token, 0 = padding). The text encoder stays outside the graph."""

    def __init__(self, unet: nn.Module, condition_names: list[str]) -> None:
        super().__init__()
        self.unet = prepare_denoiser(unet)  # PixArt: timestep by name, no micro-conditions
        self.condition_names = condition_names

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, *conditions: torch.Tensor) -> torch.Tensor:
        cond = dict(zip(self.condition_names, conditions, strict=True))
        return self.unet(sample, timestep=timestep, **cond, return_dict=False)[0]


TEXT_TOKENS = 77  # the traced sequence length of the text embeddings (CLIP's); the graph takes any


EXPORTABLE = ("UNet2DModel", "UNet2DConditionModel", "DiTTransformer2DModel", "PixArtTransformer2DModel")


def check_exportable(unet: nn.Module) -> None:
    """A ``ValueError`` naming the class and the exportable ones for a denoiser the export does not cover, and
    for a PixArt transformer with micro-conditions (``use_additional_conditions``: resolution and aspect
    ratio, PixArt-alpha at 1024 pixels), which the graph does not take."""
    if type(unet).__name__ not in EXPORTABLE:
        raise ValueError(f"ONNX export supports the denoisers {', '.join(EXPORTABLE)}; this model's is "
                         f"{type(unet).__name__}")  # fmt: skip
    if getattr(unet, "use_additional_conditions", False):
        raise ValueError("ONNX export of a PixArt transformer with use_additional_conditions (the resolution and "
                         "aspect-ratio micro-conditions of PixArt-alpha at 1024 pixels) is not supported: the graph "
                         "takes sample, timestep, text embeddings and their mask only")  # fmt: skip


def has_class_labels(unet: UNet2DModel) -> bool:
    """Whether the denoiser takes class labels (a DiT, or a UNet with ``num_class_embeds`` or a
    ``class_embed_type``)."""
    if isinstance(unet, DiTTransformer2DModel):
        return True
    if type(unet).__name__ in TEXT_DENOISERS:
        return False
    return unet.config.num_class_embeds is not None or unet.config.class_embed_type is not None


def _graph_inputs(unet: nn.Module, batch: int) -> tuple[nn.Module, dict[str, torch.Tensor], dict[str, dict]]:
    """The traced wrapper, its example inputs by graph input name and their dynamic axes."""
    cfg = unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, int) else tuple(cfg.sample_size)
    hw = (size, size) if isinstance(size, int) else size
    device = next(unet.buffers()).device
    inputs = {
        "sample": torch.zeros(batch, cfg.in_channels, *hw, device=device),  # (B, C, H, W)
        "timestep": torch.full((batch,), 500.0, device=device),  # (B,) float timesteps
    }
    if has_class_labels(unet):
        inputs["class_labels"] = torch.zeros(batch, dtype=torch.long, device=device)
    if isinstance(unet, UNet2DConditionModel):
        inputs["encoder_hidden_states"] = torch.zeros(batch, TEXT_TOKENS, cfg.cross_attention_dim, device=device)
    if isinstance(unet, PixArtTransformer2DModel):
        inputs["encoder_hidden_states"] = torch.zeros(batch, TEXT_TOKENS, cfg.caption_channels, device=device)
        inputs["encoder_attention_mask"] = torch.ones(batch, TEXT_TOKENS, device=device)  # (B, T), 1 = token
    dynamic = {name: {0: "batch", 1: "tokens"} if name.startswith("encoder_") else {0: "batch"}
               for name in [*inputs, "eps"]}  # fmt: skip
    return _Denoiser(unet, list(inputs)[2:]), inputs, dynamic


def export_graph(unet: UNet2DModel, batch: int = 2) -> onnx.ModelProto:
    """Trace ``unet`` (in whatever export or float mode is active) to an ONNX model, dynamic batch (and
    dynamic token count of a text-conditioned denoiser's ``encoder_hidden_states`` and PixArt's
    ``encoder_attention_mask``)."""
    check_exportable(unet)
    wrapper, inputs, dynamic = _graph_inputs(unet, batch)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on diffusers' shape asserts
        torch.onnx.export(
            wrapper.eval(), tuple(inputs.values()), buffer, dynamo=False, opset_version=OPSET,
            input_names=list(inputs), output_names=["eps"], dynamic_axes=dynamic,
        )  # fmt: skip
    return onnx.load_model_from_string(buffer.getvalue())


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote.

    Args:
        folder: the output folder.
        graphs: graph file names: one per activation configuration, or one for all of them.
        step_to_graph: sampling step k -> activation configuration (empty: one for every step).
        weights: the shared weight file name.
        weights_bytes: its size.
        exact_weights: layers whose int8 weights equal the checkpoint's exactly (others re-rounded).
        layers: quantized layers.
    """

    folder: Path
    graphs: list[str]
    step_to_graph: list[int]
    weights: str
    weights_bytes: int
    exact_weights: int
    layers: int
    extra: dict[str, Any] = field(default_factory=dict)
    groups: int = 1  # activation configurations (timestep groups)


def requantized_convs(unet: nn.Module) -> list[str]:
    """Convolutions that get an output quantizer: those with quantized inputs, except ``conv_out``.

    ``conv_out`` produces eps itself; it stays a float Conv rather than add 8-bit noise to the
    model's output.
    """
    return [
        name
        for name, layer in quant_layers(unet)
        if isinstance(layer, QuantConv2d) and layer.input_quant is not None and name not in KEEP_FLOAT_OUTPUT
    ]


def export_onnx(
    unet: UNet2DModel,
    out_dir: str | Path,
    calibration: CalibrationSpec | None = None,
    weight_format: str = "auto",
) -> ExportResult:
    """Write ``unet`` (frozen, quantized) as QDQ ONNX graphs sharing one weight file.

    Args:
        unet: a frozen quantized ``UNet2DModel`` (:func:`adpdm.load_quantized`).
        out_dir: output folder, created if needed.
        calibration: how to record the convolutions' output ranges (see
            :mod:`adpdm.deploy.calibrate`); with it the convolutions run as int8 ``QLinearConv``,
            without it (default) they compute in float on dequantized inputs (exactly the
            PyTorch model's arithmetic, but slow: only the Gemm / MatMul layers fuse). Text-
            conditioned denoisers export without it (their calibration sampler needs prompts).
        weight_format: ``"auto"`` (default), ``"uint8"`` (the checkpoint's codes and
            per-channel zero points, exact; U8U8 kernels), ``"int8"`` (symmetric, W8 channels
            re-rounded; U8S8 kernels, which saturate on CPUs without VNNI) or ``"int8r"``
            (|code| <= 64: U8S8 without saturation; exact for W4); see
            :func:`adpdm.deploy.export_mode.int8_weight`.
    """
    cfg = get_config(unet)  # raises for an unquantized model
    unet = unet.cpu().eval()
    if calibration is not None and type(unet).__name__ in TEXT_DENOISERS:
        raise ValueError("a text-conditioned denoiser exports without conv output ranges (calibration=None, "
                         "`adpdm export --exact`): their sampler would need prompts")  # fmt: skip
    weight_format = resolve_format(unet, weight_format)
    weights = {name: int8_weight(layer, weight_format) for name, layer in quant_layers(unet)}
    configs, step_to_graph = configurations(unet)
    outputs: dict[str, OutputQParams] = {}
    if calibration is not None:
        outputs = record_output_ranges(unet, requantized_convs(unet), step_to_graph, len(configs), calibration)
    models = []
    for g, config in enumerate(configs):
        requant = {name: (p.scales[g], p.zeros[g]) for name, p in outputs.items()}
        with export_mode(unet, config, weights, requant):
            model = export_graph(unet)
        stored = store_int8_weights(model, weights, PREFIX)
        if stored != len(weights):
            raise RuntimeError(f"only {stored} of {len(weights)} quantized layers were found in the exported graph")
        model = slim(model)  # before any upgrade: slim's shape passes fold the exporter's opset best
        if needs_opset(model) > OPSET:  # blocked or 4-bit DequantizeLinear
            model = upgrade_opset(model, needs_opset(model))
        models.append(model)
        logger.info("graph %d/%d: %d nodes", g + 1, len(configs), len(model.graph.node))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    one = share_graphs(models)
    if one is not None:
        graphs = ["graph.onnx"]
        shared = save_shared([one.model], [out / graphs[0]], WEIGHTS)
        # per name: (G, *shape), the values of every group
        save_file({name: torch.from_numpy(np.stack([v[name] for v in one.values])) for name in one.values[0]},
                  str(out / GROUP_VALUES))  # fmt: skip
    else:
        graphs = [f"graph_{g}.onnx" for g in range(len(configs))]
        shared = save_shared(models, [out / name for name in graphs], WEIGHTS)
    result = ExportResult(out, graphs, step_to_graph, WEIGHTS, shared.bytes, sum(w.exact for w in weights.values()),
                          len(weights), groups=len(configs))  # fmt: skip
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "opset": opset_of(models[0]),
        "graphs": graphs,
        "groups": len(configs),
        "group_values": GROUP_VALUES if one is not None else None,
        "step_to_graph": step_to_graph,
        "weights": WEIGHTS,
        "inputs": [i.name for i in models[0].graph.input],
        "sample_shape": list(export_input_shape(unet)),
        "weight_format": weight_format,
        "weight_group_size": cfg.weight_group_size,
        "wbits": cfg.wbits,
        "abits": cfg.abits,
        "protocol": cfg.protocol,
        "first_last_bits": cfg.first_last_bits,
        "layer_bits": cfg.to_dict()["layer_bits"],
        "exact_weight_layers": result.exact_weights,
        "requantized_outputs": sorted(outputs),
        "layers": result.layers,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    logger.info("wrote %d graph(s) for %d group(s) and %s (%d bytes) to %s", len(graphs), len(configs), WEIGHTS,
                shared.bytes, out)  # fmt: skip
    return result


def export_input_shape(unet: UNet2DModel) -> tuple[int, int, int]:
    """(C, H, W) of one sample."""
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else size
    return unet.config.in_channels, h, w


def export_float(unet: UNet2DModel, out_dir: str | Path) -> Path:
    """The same network in fp32 (quantizers bypassed, dequantized weights) as a one-graph export folder.

    The baseline for speed and size; :class:`adpdm.deploy.OnnxDenoiser` runs it like a quantized export.
    """
    with float_mode(unet):
        model = slim(export_graph(unet.cpu().eval()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out / "fp32.onnx"))
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "opset": OPSET, "graphs": ["fp32.onnx"],
                "step_to_graph": [], "weights": None, "inputs": [i.name for i in model.graph.input],
                "sample_shape": list(export_input_shape(unet)), "wbits": 32, "abits": 32}  # fmt: skip
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out


def result_dict(result: ExportResult) -> dict[str, Any]:
    """JSON-ready view of an :class:`ExportResult`."""
    d = asdict(result)
    d["folder"] = str(result.folder)
    return d
