"""Run an exported model with ONNX Runtime behind the UNet's calling convention.

:class:`OnnxDenoiser` opens one session per exported graph and, at every call, runs the
graph of the current sampling step's group (from :func:`adpdm.current_step`), so
:func:`adpdm.sampling.sample` drives it exactly like the PyTorch model::

    denoiser = OnnxDenoiser("out/w8a8-onnx")
    out = sample(denoiser, scheduler_config, 16, SamplerConfig(num_steps=100))
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..context import current_step
from .onnx_export import FORMAT, MANIFEST, READABLE_VERSIONS

logger = logging.getLogger(__name__)


@dataclass
class RuntimeOptions:
    """ONNX Runtime session settings.

    Args:
        providers: execution providers in order of preference (default CPU).
        threads: intra-op threads (default 1; 0 lets ORT decide).
        optimization: graph optimisation level, ``"all"`` (default: QDQ fusions and layout
            transforms), ``"extended"``, ``"basic"`` or ``"disable"``.
        profile_prefix: write an ORT profiling trace per session with this prefix.
    """

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 1
    optimization: str = "all"
    profile_prefix: str | None = None


_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}  # fmt: skip


def make_session(path: str | Path, options: RuntimeOptions, initializers: dict[str, Any] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``path`` with ``options``; ``initializers`` (name -> ORT
    value, kept alive by the caller) replace the graph's initializers of those names."""
    import onnxruntime as ort

    if options.optimization not in _LEVELS:
        raise ValueError(f"optimization must be one of {sorted(_LEVELS)}, got {options.optimization!r}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[options.optimization])
    so.log_severity_level = 3  # the optimizer's layout warnings are expected
    if options.profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = options.profile_prefix
    for name, value in (initializers or {}).items():
        so.add_initializer(name, value)
    return ort.InferenceSession(str(path), so, providers=list(options.providers))


def group_initializers(folder: str | Path, meta: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per group, the ORT values of the shared graph's per-group initializers (None: one graph per group)."""
    if not meta.get("group_values"):
        return None
    import onnxruntime as ort
    from safetensors.numpy import load_file

    table = load_file(str(Path(folder) / meta["group_values"]))
    return [{name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(values[g])) for name, values in table.items()}
            for g in range(int(meta["groups"]))]  # fmt: skip


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The validated ``deploy.json`` of an export folder."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an ONNX export of adpdm (no {MANIFEST}): run `adpdm export`")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT or meta.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{path} is not a {FORMAT} manifest of version {' or '.join(map(str, READABLE_VERSIONS))}")
    return meta


def _token_mask(mask: torch.Tensor | None, embeddings: np.ndarray) -> np.ndarray:
    """(B, T) float32 padding mask of ``embeddings`` (B, T, D): ``mask``, or all ones without one."""
    if mask is None:
        return np.ones(embeddings.shape[:2], np.float32)
    if mask.ndim != 2:
        raise ValueError(f"encoder_attention_mask must be (batch, tokens) with 1 = token, 0 = padding; got shape "
                         f"{tuple(mask.shape)}")  # fmt: skip
    return mask.detach().float().cpu().numpy()


class OnnxDenoiser:
    """The exported UNet as a denoiser: ``denoiser(sample, timestep, class_labels=None,
    encoder_hidden_states=None, encoder_attention_mask=None).sample`` (labels for class-conditional exports,
    text embeddings for text-conditioned ones, and their padding mask for PixArt's: 1 = token, 0 = padding,
    all tokens when left out, as the PyTorch model).

    Args:
        folder: an export folder written by :func:`adpdm.deploy.export_onnx`.
        options: session settings (default :class:`RuntimeOptions`).
    """

    dtype = torch.float32

    def __init__(self, folder: str | Path, options: RuntimeOptions | None = None) -> None:
        self.folder = Path(folder)
        self.options = options or RuntimeOptions()
        meta = read_manifest(folder)
        self.step_to_graph: list[int] = meta["step_to_graph"]
        self.inputs: list[str] = meta["inputs"]
        self.values = group_initializers(self.folder, meta)  # kept alive: the sessions read them
        if self.values is None:
            self.sessions = [make_session(self.folder / name, self.options) for name in meta["graphs"]]
        else:
            self.sessions = [make_session(self.folder / meta["graphs"][0], self.options, v) for v in self.values]
        c, h, w = meta["sample_shape"]
        self.config = SimpleNamespace(in_channels=c, sample_size=(h, w))
        self.device = torch.device("cpu")
        self.calls = [0] * len(self.sessions)

    def graph_for(self, step: int | torch.Tensor | None) -> int:
        """Index of the graph serving sampling step ``step``."""
        if len(self.sessions) == 1:
            return 0
        if step is None:
            raise RuntimeError(
                f"this export has {len(self.sessions)} graphs (timestep groups): wrap each call in "
                "`with adpdm.step_context(k):`"
            )
        if isinstance(step, torch.Tensor):
            graphs = {self.step_to_graph[int(k)] for k in step.tolist()}
            if len(graphs) != 1:
                raise ValueError("one ONNX call serves one group: the batch mixes steps of several groups")
            return graphs.pop()
        if not 0 <= step < len(self.step_to_graph):
            raise ValueError(f"step {step} out of range for {len(self.step_to_graph)} sampling steps")
        return self.step_to_graph[step]

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        class_labels: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        **_: Any,
    ) -> SimpleNamespace:
        g = self.graph_for(current_step())
        b = sample.shape[0]
        feeds = {
            "sample": sample.detach().float().cpu().numpy(),
            "timestep": np.broadcast_to(np.asarray(torch.as_tensor(timestep).cpu(), np.float32), (b,)).copy(),
        }
        if "class_labels" in self.inputs:
            if class_labels is None:
                raise ValueError("this model is class-conditional: pass class_labels")
            feeds["class_labels"] = class_labels.detach().cpu().numpy().astype(np.int64)
        if "encoder_hidden_states" in self.inputs:
            if encoder_hidden_states is None:
                raise ValueError("this model is text-conditioned: pass encoder_hidden_states (the text embeddings)")
            feeds["encoder_hidden_states"] = encoder_hidden_states.detach().float().cpu().numpy()
        if "encoder_attention_mask" in self.inputs:
            feeds["encoder_attention_mask"] = _token_mask(encoder_attention_mask, feeds["encoder_hidden_states"])
        self.calls[g] += 1
        (eps,) = self.sessions[g].run(None, feeds)
        return SimpleNamespace(sample=torch.from_numpy(eps))

    def end_profiling(self) -> list[str]:
        """Stop profiling; the trace files of the sessions that ran."""
        return [s.end_profiling() for s, n in zip(self.sessions, self.calls, strict=True) if n]
