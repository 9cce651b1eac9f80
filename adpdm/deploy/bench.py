"""Speed and size of the ONNX deployment: int8 ONNX Runtime against fp32 ONNX Runtime and PyTorch.

For one quantized checkpoint: the exact export (no conv output quantizers, "before") and the
int8-conv export ("after"), the fp32 graph of the same network, and PyTorch fp32 (quantizers
bypassed). Times are the median of repeats, one thread; results carry the machine.

A text-conditioned denoiser (UNet or PixArt) exports exact graphs only (:func:`adpdm.deploy.export_onnx`),
so its quantized runner is the exact export; every run feeds the embeddings of one fixed prompt
(:data:`TEXT_PROMPT`, the pipeline's own tokenizer and text encoder; for PixArt with its padding mask)
without guidance.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import PixArtTransformer2DModel

from ..checkpoint import load_quantized
from ..context import step_context
from ..eval.metrics import psnr
from ..generate import decode_latents
from ..models.loading import DiffusionModel, load_model
from ..sampling import SampleOutput, SamplerConfig, sample
from .calibrate import CalibrationSpec
from .export_mode import float_mode
from .onnx_export import export_float, export_onnx
from .profile import OpTime, format_profile, op_profile
from .runtime import OnnxDenoiser, RuntimeOptions

logger = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    """What to measure.

    Args:
        batches: batch sizes (default 1 and 16).
        steps: sampling steps of the whole-run timing (default 100).
        repeats: forward repeats per timing (default 20).
        threads: torch and ORT intra-op threads (default 1).
        weight_format: weight format of both quantized exports (see :func:`adpdm.deploy.export_onnx`).
    """

    batches: tuple[int, ...] = (1, 16)
    steps: int = 100
    repeats: int = 20
    threads: int = 1
    weight_format: str = "auto"


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


TEXT_PROMPT = "a photograph of a cat"


def text_conditioning(model: DiffusionModel, prompt: str = TEXT_PROMPT) -> dict[str, torch.Tensor]:
    """``prompt`` as a text model's pipeline feeds it to the denoiser, batch 1: ``encoder_hidden_states``
    (1, tokens, dim) from its tokenizer and text encoder; for PixArt also the padding mask
    ``encoder_attention_mask`` (1, tokens), from the pipeline's own ``encode_prompt``."""
    pipe = model.pipeline
    device = pipe.text_encoder.device
    with torch.no_grad():
        if isinstance(model.unet, PixArtTransformer2DModel):
            emb, mask, _, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device=device)
            return {"encoder_hidden_states": emb.float().cpu(), "encoder_attention_mask": mask.float().cpu()}
        tok = pipe.tokenizer
        ids = tok([prompt], padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids  # fmt: skip
        return {"encoder_hidden_states": pipe.text_encoder(ids.to(device))[0].float().cpu()}


def _batched(cond: dict[str, torch.Tensor], batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A batch-1 conditioning repeated to ``batch`` rows."""
    return {name: v.to(device).expand(batch, *v.shape[1:]) for name, v in cond.items()}


class _FixedText:
    """A text-conditioned denoiser called as a class-free one: every call gets the same conditioning."""

    def __init__(self, denoiser: Any, cond: dict[str, torch.Tensor]) -> None:
        self.denoiser, self.cond = denoiser, cond

    def __getattr__(self, name: str) -> Any:  # config, device, dtype, parameters of the denoiser
        return getattr(self.denoiser, name)

    def __call__(self, sample: torch.Tensor, timestep: Any, class_labels: Any = None, **_: Any) -> Any:
        return self.denoiser(sample, timestep, **_batched(self.cond, sample.shape[0], sample.device))


def _conditioning(model: DiffusionModel, batch: int, text: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    if text is not None:
        return _batched(text, batch, torch.device("cpu"))
    if model.num_classes is not None:
        return {"class_labels": torch.zeros(batch, dtype=torch.long)}
    return {}


def _forward(denoiser: Any, x: torch.Tensor, cond: dict[str, torch.Tensor]) -> Callable[[], Any]:
    t = torch.full((x.shape[0],), 500)  # one per row: transformers need a 1-d timestep

    def run() -> Any:
        with torch.no_grad(), step_context(0):
            return denoiser(x, t, **cond).sample

    return run


def _file_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def bench_deploy(quantized: str | Path, model: str | DiffusionModel, cfg: BenchConfig) -> dict[str, Any]:
    """Measure one checkpoint of ``model`` (a spec or a loaded model, for its scheduler and classes);
    returns a JSON-ready dict (timings in ms, sizes in bytes)."""
    torch.set_num_threads(cfg.threads)
    model = load_model(model) if isinstance(model, str) else model
    unet = load_quantized(quantized)
    work = Path(tempfile.mkdtemp(prefix="adpdm_deploy_"))
    try:
        out = _measure(unet, model, quantized, cfg, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["speedup"] = speedups(out)
    return out


# convolutions and matrix products, as ORT runs them in float and in int8
PRODUCTS = ("Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm")
INT8_PRODUCTS = ("QLinearConv", "MatMulIntegerToFloat", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger")


def speedups(result: dict[str, Any]) -> dict[str, Any]:
    """fp32 ORT time over int8 ORT time for every batch, and two bounds from the operator profiles.

    ``free_products_bound``: an int8 graph whose convolutions and matrix products took no time
    and which added nothing else would still spend the fp32 graph's time on everything else.
    ``kernel_bound``: the fp32 forward with its products at the measured speed of the int8
    kernels (everything else, Q/DQ included, as in fp32). The gap between ``kernel_bound`` and
    the measured forward speed-up is what the int8 graph's extra operators cost.
    """
    q = quantized_runner(result["profiles"])
    fp32, int8 = result["profiles"]["fp32"], result["profiles"][q]
    total = sum(r["micros"] for r in fp32)
    products = sum(r["micros"] for r in fp32 if r["op"] in PRODUCTS)
    int8_products = sum(r["micros"] for r in int8 if r["op"] in PRODUCTS + INT8_PRODUCTS)
    return {
        "sampling": {b: row["fp32"] / row[q] for b, row in result["sampling_s"].items()},
        "forward": {b: row["fp32"] / row[q] for b, row in result["forward_ms"].items()},
        "fp32_product_share": products / max(1, total),
        "product_kernel_speedup": products / max(1, int8_products),
        "free_products_bound": total / max(1, total - products),
        "kernel_bound": total / max(1, total - products + int8_products),
    }


def quantized_runner(by_runner: dict[str, Any]) -> str:
    """The quantized runner the speed-ups compare: the int8-conv export, or the exact one where there is
    none (text-conditioned denoisers)."""
    return "int8" if "int8" in by_runner else "int8_exact"


def _measure(unet: torch.nn.Module, model: Any, quantized: str | Path, cfg: BenchConfig, work: Path) -> dict[str, Any]:
    text = text_conditioning(model) if model.kind == "text" else None
    folders = {"int8_exact": work / "exact"}
    export_onnx(unet, folders["int8_exact"], weight_format=cfg.weight_format)
    if text is None:
        folders["int8"] = work / "int8"
        spec = CalibrationSpec(model.scheduler_config, 4, model.num_classes, model.null_class)
        export_onnx(unet, folders["int8"], spec, cfg.weight_format)
    folders["fp32"] = export_float(unet, work / "fp32")
    q = quantized_runner(folders)
    opts = RuntimeOptions(threads=cfg.threads)
    runners = {name: OnnxDenoiser(folder, opts) for name, folder in folders.items()}
    shape = runners["fp32"].config

    def sampled(denoiser: Any) -> Any:  # the sampler calls denoisers without text: give it the prompt's
        return denoiser if text is None else _FixedText(denoiser, text)

    out: dict[str, Any] = {"forward_ms": {}, "sampling_s": {}, "sizes": {}, "profiles": {}, "psnr_vs_torch": {}}
    for b in cfg.batches:
        x = torch.randn(b, shape.in_channels, *shape.sample_size)
        cond = _conditioning(model, b, text)
        row = {name: _median_ms(_forward(r, x, cond), cfg.repeats) for name, r in runners.items()}
        with float_mode(unet):
            row["torch_fp32"] = _median_ms(_forward(unet, x, cond), cfg.repeats)
        out["forward_ms"][f"batch_{b}"] = row
        logger.info("forward batch %d: %s", b, row)
    classes = dict(num_classes=model.num_classes, null_class=model.null_class, progress=False, clamp=not model.latent)

    def pixels(out: SampleOutput) -> torch.Tensor:  # a latent model's samples are compared as decoded images
        return decode_latents(model, out, len(out.images)).images if model.latent else out.images

    for b in cfg.batches:
        scfg = SamplerConfig(num_steps=cfg.steps, batch_size=b, seed=0)
        row, images = {}, {}
        for name, r in runners.items():
            start = time.perf_counter()
            images[name] = pixels(sample(sampled(r), model.scheduler_config, b, scfg, **classes))
            row[name] = time.perf_counter() - start
        with float_mode(unet):
            start = time.perf_counter()
            sample(sampled(unet), model.scheduler_config, b, scfg, **classes)
            row["torch_fp32"] = time.perf_counter() - start
        ref = pixels(sample(sampled(unet), model.scheduler_config, b, scfg, **classes))  # PyTorch quantized
        out["psnr_vs_torch"][f"batch_{b}"] = {n: float(psnr(images[n], ref).mean()) for n in folders if n != "fp32"}
        out["sampling_s"][f"batch_{b}"] = row
        logger.info("sampling %d steps, batch %d: %s", cfg.steps, b, row)
    x = torch.randn(max(cfg.batches), shape.in_channels, *shape.sample_size)
    cond = _conditioning(model, len(x), text)
    for name, folder in folders.items():
        prof = OnnxDenoiser(folder, RuntimeOptions(threads=cfg.threads, profile_prefix=str(work / name)))
        _forward(prof, x, cond)()
        out["profiles"][name] = [asdict(r) for r in op_profile(prof.end_profiling()[0])]
    out["sizes"] = {name: _file_bytes(folder) for name, folder in folders.items()}
    out["sizes"]["int8_weights_file"] = (folders[q] / "weights.bin").stat().st_size
    out["sizes"]["checkpoint"] = (Path(quantized) / "model.safetensors").stat().st_size
    out["sizes"]["fp32_over_int8"] = out["sizes"]["fp32"] / out["sizes"][q]  # the folders' size ratio
    out["weight_format"] = json.loads((folders[q] / "deploy.json").read_text())["weight_format"]
    out["quantized_runner"] = q
    out["text_prompt"] = TEXT_PROMPT if text is not None else None
    return out


def markdown(name: str, result: dict[str, Any]) -> str:
    """A readable summary of one :func:`bench_deploy` result (plus the run's header)."""
    lines = [f"# Deployment benchmark `{name}`", "", f"machine: {result['machine']}", "",
             f"weight format: {result.get('weight_format', 'auto')}", ""]  # fmt: skip
    if result.get("text_prompt"):
        lines += [f"text-conditioned: the exact export is the quantized runner (no int8-conv export); every run "
                  f"takes the embeddings of {result['text_prompt']!r}, no guidance", ""]  # fmt: skip
    steps = result["config"]["steps"]
    lines += ["## UNet forward (ms, median)", "", *_table(result["forward_ms"]), "",
              f"## Whole sampling run ({steps} steps, s)", "", *_table(result["sampling_s"])]  # fmt: skip
    lines += ["", f"PSNR of the ORT samples against the PyTorch quantized samples: {result['psnr_vs_torch']}", ""]
    lines += ["## Sizes (bytes)", "", "| " + " | ".join(result["sizes"]) + " |", "|---" * len(result["sizes"]) + "|",
              "| " + " | ".join(str(v) for v in result["sizes"].values()) + " |", ""]  # fmt: skip
    if "speedup" in result:
        sp = result["speedup"]
        lines += ["## Speed-up of int8 over fp32 ONNX Runtime", "",
                  f"whole run: {_ratios(sp['sampling'])}; forward: {_ratios(sp['forward'])}", "",
                  f"The fp32 graph spends {100 * sp['fp32_product_share']:.0f}% of its forward (largest batch) in "
                  "convolutions and matrix products; the int8 kernels run those "
                  f"{sp['product_kernel_speedup']:.2f}x faster. Bounds on the forward speed-up: "
                  f"{sp['free_products_bound']:.2f}x if the products took no time and nothing were added, "
                  f"{sp['kernel_bound']:.2f}x at the int8 kernels' measured speed with nothing added.", ""]  # fmt: skip
    for name, rows in result["profiles"].items():
        lines += [f"## Per-operator profile: {name} (one forward, largest batch)", "",
                  format_profile([OpTime(**r) for r in rows]), ""]  # fmt: skip
    return "\n".join(lines)


def _ratios(by_batch: dict[str, float]) -> str:
    return ", ".join(f"{b.replace('_', ' ')} {v:.2f}x" for b, v in by_batch.items())


_COLS = ("int8", "int8_exact", "fp32", "torch_fp32")


def _table(rows: dict[str, dict[str, float]]) -> list[str]:
    """Markdown lines: one row per batch size, one column per runner."""
    cols = [c for c in _COLS if c in next(iter(rows.values()))]  # a text model has no int8-conv export
    head = ["| batch | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    return head + [f"| {batch} | " + " | ".join(f"{row[c]:.2f}" for c in cols) + " |" for batch, row in rows.items()]
