"""The benchmark: every method side by side on the same model, noise and machine.

One row per model x method x bit width (schema in ``ROW_FIELDS``), written to
``benchmarks/results/<name>.json`` after every row (an interrupted run loses at most one row and
``resume`` skips the rows already there), plus a markdown table and figures.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import TENSORS, save_quantized
from .config import QuantConfig
from .eval.evaluate import EvalConfig, Evaluator, evaluate_against_fp, sample_models
from .methods import get_method
from .models.loading import DiffusionModel, is_embedded, load_model
from .ptq import CalibConfig, run_ptq
from .recon.reconstruct import ReconConfig
from .sampling import SamplerConfig
from .utils.resources import machine_description
from .utils.table import markdown_table

logger = logging.getLogger(__name__)

ROW_FIELDS = ("model", "method", "wbits", "abits", "groups", "timesteps", "num_samples", "fid_data", "fid_fp",
              "psnr", "accuracy", "calib_seconds", "peak_mem_mb", "ckpt_bytes")  # fmt: skip
MAIN_METHODS = ("rtn", "ptq4dm", "qdiffusion", "adpdm")
ABLATIONS = ("adpdm-g1", "adpdm-uniform", "adpdm-perlayer", "adpdm-perstep")


@dataclass
class BenchConfig:
    """What the benchmark runs.

    Args:
        name: results file stem.
        models: model specs (``embedded:NAME``, unconditional or class-conditional pipeline folders).
        methods: registry names.
        presets: bit-width presets.
        ablation_models, ablation_presets: where the ablation methods (``methods.ABLATIONS``) run;
            the main methods run on every model and preset.
        groups: G for the grouped methods.
        num_samples: samples per model for the metrics.
        steps: DDIM steps K (deployment schedule and calibration sampler).
        calib: calibration data settings (its sampler is replaced by one with ``steps``).
        recon: reconstruction settings (the same budget for every method).
        eval: metric settings.
        seed: evaluation noise seed (calibration uses ``seed + 1``).
        null_class: the "no class" label of class-conditional pipeline folders (guidance 2.0
            with it, none without); embedded models know theirs.
    """

    name: str = "full"
    models: tuple[str, ...] = ("embedded:mnist", "embedded:mnist-cond")
    methods: tuple[str, ...] = MAIN_METHODS + ABLATIONS
    presets: tuple[str, ...] = ("w8a8", "w6a6", "w4a8")
    ablation_models: tuple[str, ...] = ("embedded:mnist",)
    ablation_presets: tuple[str, ...] = ("w4a8",)
    groups: int = 4
    num_samples: int = 128
    steps: int = 20
    calib: CalibConfig = field(default_factory=lambda: CalibConfig(num_samples=16, calib_steps=6, signature_samples=4))
    recon: ReconConfig = field(default_factory=lambda: ReconConfig(iters=50))
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(ref_num=2000))
    seed: int = 0
    null_class: int | None = None

    def __post_init__(self) -> None:
        for m in self.methods:
            get_method(m)
        for p in self.presets:
            QuantConfig.preset(p)
        if self.num_samples < 2:
            raise ValueError(f"BenchConfig.num_samples must be >= 2, got {self.num_samples}")
        self.calib = dataclasses.replace(
            self.calib, sampler=dataclasses.replace(self.calib.sampler, num_steps=self.steps, seed=self.seed + 1)
        )

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """The same table on fewer samples and steps (minutes on 2 CPU cores)."""
        # sized for <= 10 minutes on 2 CPU cores, where the Inception network (~0.5 s per image)
        # dominates: 16 samples (FIDs on so few are only indicative), 10 steps, 10 iterations
        base = dict(
            name="quick", methods=MAIN_METHODS, num_samples=16, steps=10,
            calib=CalibConfig(num_samples=8, calib_steps=4, signature_samples=4),
            recon=ReconConfig(iters=10), eval=EvalConfig(ref_num=200),
        )  # fmt: skip
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def runs(self, model: str, preset: str, method: str) -> bool:
        """Whether ``method`` runs on ``model`` at ``preset`` (ablations only where configured)."""
        return method not in ABLATIONS or (model in self.ablation_models and preset in self.ablation_presets)


def _ckpt_bytes(model: torch.nn.Module) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        save_quantized(model, tmp)
        return (Path(tmp) / TENSORS).stat().st_size


def _fp_bytes(unet: torch.nn.Module) -> int:
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, Path(tmp) / "fp.safetensors")
        return (Path(tmp) / "fp.safetensors").stat().st_size


class Results:
    """The results file: rows plus settings and machine, rewritten after every row."""

    def __init__(self, path: Path, cfg: BenchConfig, resume: bool) -> None:
        self.path = path
        self.data: dict[str, Any] = {"rows": [], "reports": {}, "samples": {}}
        if resume and path.is_file():
            self.data = json.loads(path.read_text())
        self._prior_seconds = float(self.data.get("wall_seconds", 0.0))  # earlier parts of a resumed run
        self._start = time.perf_counter()
        self.data.update({"config": cfg.to_dict(), "adpdm_version": __version__, "machine": machine_description()})

    def has(self, model: str, method: str, preset: str) -> bool:
        return any(r["model"] == model and r["method"] == method and r.get("preset") == preset
                   for r in self.data["rows"])  # fmt: skip

    def add(self, row: dict[str, Any], report: dict[str, Any] | None = None) -> None:
        self.data["rows"].append(row)
        if report is not None:
            self.data["reports"][f"{row['model']}|{row['method']}|{row['preset']}"] = report
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.data["wall_seconds"] = self._prior_seconds + time.perf_counter() - self._start
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def _row(model: str, method: str, qcfg: QuantConfig | None, report: dict | None, res: Any, ckpt: int) -> dict:
    row = {
        "model": model, "method": method, "preset": "fp32" if qcfg is None else f"w{qcfg.wbits}a{qcfg.abits}",
        "wbits": 32 if qcfg is None else qcfg.wbits, "abits": 32 if qcfg is None else qcfg.abits,
        "groups": None if report is None else report["quant_config"]["groups"],
        "timesteps": None if report is None else report["calibration"]["strategy"],
        "num_samples": res.num_samples, "fid_data": res.fid_data, "fid_fp": res.fid_fp, "psnr": res.psnr,
        "accuracy": res.accuracy, "calib_seconds": None if report is None else report["calib_seconds"],
        "peak_mem_mb": None if report is None else report["peak_mem_mb"], "ckpt_bytes": ckpt,
        "clf_fid_data": res.clf_fid_data, "clf_fid_fp": res.clf_fid_fp,
    }  # fmt: skip
    return row


def run_benchmark(cfg: BenchConfig, out_dir: str | Path = "benchmarks", resume: bool = False) -> Path:
    """Run every model x preset x method; returns the results JSON path."""
    out = Path(out_dir)
    results = Results(out / "results" / f"{cfg.name}.json", cfg, resume)
    models = {spec: _load(spec, cfg.null_class) for spec in cfg.models}  # every spec checked before any work
    evaluators = {mnist: Evaluator(dataclasses.replace(cfg.eval, mnist=mnist))
                  for mnist in {is_embedded(spec) for spec in cfg.models}}  # fmt: skip
    sampler = SamplerConfig(num_steps=cfg.steps, seed=cfg.seed)
    # the main methods on every model first, then the ablations (so a cut-short run has the table)
    phases = [tuple(m for m in cfg.methods if m not in ABLATIONS), tuple(m for m in cfg.methods if m in ABLATIONS)]
    for methods in phases:
        for spec, model in models.items():
            todo = [(p, m) for p in cfg.presets for m in methods
                    if cfg.runs(spec, p, m) and not results.has(spec, m, p)]  # fmt: skip
            if todo or not results.has(spec, "fp32", "fp32"):
                _bench_model(cfg, model, todo, results, evaluators[is_embedded(spec)], sampler, out)
    write_markdown(results.data, out / "results" / f"{cfg.name}.md")
    from .bench_figures import write_figures

    write_figures(results.data, out / "figures", cfg.name)
    return results.path


def _load(spec: str, null_class: int | None) -> DiffusionModel:
    model = load_model(spec, None if is_embedded(spec) else null_class)
    if model.kind == "text":
        raise ValueError(f"{spec} is text-conditioned: `adpdm bench` compares methods on unconditional and "
                         "class-conditional models; for a text pipeline run `adpdm quantize` per method and "
                         "`adpdm evaluate --prompts FILE`")  # fmt: skip
    return model


def _bench_model(
    cfg: BenchConfig,
    model: DiffusionModel,
    todo: list[tuple[str, str]],
    results: Results,
    evaluator: Evaluator,
    sampler: SamplerConfig,
    out: Path,
) -> None:
    """FP row (once) and the (preset, method) rows of ``todo`` for one model; sample grids."""
    spec, conditional = model.spec, model.kind == "class"
    msampler = dataclasses.replace(sampler, guidance_scale=model.default_guidance)
    mcalib = dataclasses.replace(
        cfg.calib, sampler=dataclasses.replace(cfg.calib.sampler, guidance_scale=msampler.guidance_scale)
    )
    fp = sample_models({"fp32": model.unet}, model, cfg.num_samples, msampler)
    grids = {"fp32": fp["fp32"].images[:64]}
    if not results.has(spec, "fp32", "fp32"):
        res = evaluate_against_fp(evaluator, fp, "fp32", conditional)["fp32"]
        results.add(_row(spec, "fp32", None, None, res, _fp_bytes(model.unet)))
    for preset, method in todo:
        qcfg = QuantConfig.preset(preset, num_steps=cfg.steps)
        logger.info("bench: %s %s %s", spec, method, preset)
        start = time.perf_counter()
        ptq = run_ptq(copy.deepcopy(model.unet), model.scheduler_config, method, qcfg, mcalib, cfg.recon,
                      groups=cfg.groups, num_classes=model.num_classes, null_class=model.null_class,
                      progress=False)  # fmt: skip
        q = sample_models({method: ptq.model}, model, cfg.num_samples, msampler, progress=False)
        res = evaluate_against_fp(evaluator, {**fp, **q}, "fp32", conditional)[method]
        row = _row(spec, method, qcfg, ptq.report, res, _ckpt_bytes(ptq.model))
        row["row_seconds"] = time.perf_counter() - start  # calibration, sampling and metrics
        results.add(row, ptq.report)
        grids[f"{method} {preset}"] = q[method].images[:64]
    key = f"{spec}|{'ablations' if todo and todo[0][1] in ABLATIONS else 'main'}"
    results.data["samples"][key] = _save_grids(grids, out / "figures", key, cfg.name)
    results.save()


def _save_grids(grids: dict[str, torch.Tensor], folder: Path, spec: str, name: str) -> str:
    from .sampling import side_by_side

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_{spec.replace(':', '_').replace('|', '_')}_samples.png"
    side_by_side(grids, path)
    return str(path)


def write_markdown(data: dict[str, Any], path: Path) -> Path:
    """The results table as markdown, with the settings and the machine."""
    cols = ("model", "method", "preset", "groups", "timesteps", "fid_data", "fid_fp", "psnr", "accuracy",
            "clf_fid_data", "calib_seconds", "peak_mem_mb", "ckpt_bytes")  # fmt: skip
    m = data["machine"]
    c = data["config"]
    text = (
        f"# Benchmark `{c['name']}`\n\n{c['num_samples']} samples per model, DDIM {c['steps']} steps, "
        f"reconstruction {c['recon']['iters']} iterations per block, G = {c['groups']}, "
        f"FID reference: {c['eval'].get('ref') or str(c['eval']['ref_num']) + ' MNIST test images'}.\n\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads).\n\n"
        + (f"Wall time of the run: {data['wall_seconds'] / 60:.1f} minutes.\n\n" if "wall_seconds" in data else "")
        + markdown_table(data["rows"], cols)
        + "\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
