"""The benchmark: every method side by side on the same model, noise and machine.

One row per model x method x bit width (schema in ``ROW_FIELDS``), written to
``benchmarks/results/<name>.json`` after every row (an interrupted run loses at most one row and
``resume`` skips the rows already there), plus a markdown table and figures.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .analysis.cost import bits_label
from .compare import CompareConfig, Run, compare_methods, row_preset
from .eval.evaluate import EvalConfig, Evaluator
from .eval.paired import summarize
from .generate import Conditioning, check_conditioning
from .models.loading import DiffusionModel, is_embedded, load_model
from .ptq import CalibConfig
from .recon.reconstruct import ReconConfig
from .sampling import SamplerConfig
from .utils.resources import machine_description, provenance
from .utils.table import markdown_table

logger = logging.getLogger(__name__)

ROW_FIELDS = ("model", "method", "wbits", "abits", "groups", "timesteps", "num_samples", "fid_data", "fid_fp",
              "psnr", "haze", "accuracy", "calib_seconds", "peak_mem_mb", "ckpt_bytes")  # fmt: skip
MAIN_METHODS = ("rtn", "ptq4dm", "qdiffusion", "adpdm")
ABLATIONS = ("adpdm-g1", "adpdm-uniform", "adpdm-perlayer", "adpdm-perstep")
# what the methods' settings were chosen on: never the benchmark's evaluation noise
TUNED_ON = (
    "settings chosen on validation noise, never on this evaluation noise: the reconstruction learning rates on "
    "seed 2 (studies/reconstruction-settings); SignRound rounding, held-out acceptance per unit, the sampler-output "
    "checks of the start and of the result, the group search's share of iterations and the sampler-weighted row "
    "error on seed 7 (studies/rounding, studies/unit-judge, studies/range-start, studies/row-error)"
)
PROTOCOL = (
    "every method calibrated on the same draws {draws} (calibration noise seeds) and scored on held-out "
    "evaluation noise seed {seed}; {tuned_on}; the field's layer protocol: the first and last layer (a UNet's "
    "conv_in and conv_out, a transformer's patch embedding pos_embed.proj and final projection proj_out_2) at 8 "
    "bits (W8A8) and the network output unquantized, for every method alike, except the presets ending in "
    "-strict, which quantize those two layers at the preset's bits too"
)


@dataclass
class BenchConfig:
    """What the benchmark runs.

    Args:
        name: results file stem.
        models: model specs (``embedded:NAME``, pipeline folders; text-conditioned ones need ``prompts``).
        methods: registry names.
        presets: bit-width presets.
        draws: calibration draws (the calibration noise seeds); every method runs on every draw.
        ablation_models: where the ablation methods (``methods.ABLATIONS``) run when asked for; the
            main methods run on every model.
        ablation_presets: the presets the ablation methods run at; the main methods run at every preset.
        groups: G for the grouped methods.
        num_samples: samples per model for the metrics.
        steps: DDIM steps K (deployment schedule and calibration sampler).
        calib: calibration data settings (its sampler gets ``steps``, the draw's seed, the guidance).
        recon: reconstruction settings (the same budget for every method).
        eval: metric settings.
        seed: evaluation noise seed, held out of the draws.
        null_class: the "no class" label of class-conditional pipeline folders (guidance 2.0
            with it, none without); embedded models know theirs.
        diagnose: also the teacher-forced per-step output error of every run.
        fp_floor: FID of FP against FP on independent noise (the floor of FID against FP).
        tuned_on: what the methods' settings were chosen on (written with the results).
        layer_bits: mixed precision for every method alike (``QuantConfig.layer_bits``); the rows state
            their effective bits.
        smoothing: input smoothing for every method alike (``QuantConfig.smoothing``); rows ``PRESET-smooth``.
        prompts: the prompts of the text-conditioned models (calibration and evaluation, on their own noise).
    """

    name: str = "benchmark"
    models: tuple[str, ...] = ("embedded:mnist", "embedded:mnist-cond")
    methods: tuple[str, ...] = MAIN_METHODS
    presets: tuple[str, ...] = ("w8a8", "w8a6", "w6a6", "w4a8", "w4a6", "w4a8-strict")
    draws: tuple[int, ...] = (1, 2, 3, 4)
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
    diagnose: bool = False
    fp_floor: bool = True
    tuned_on: str = TUNED_ON
    layer_bits: tuple[tuple[str, int, int], ...] = ()
    smoothing: bool = False
    prompts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.prompts = tuple(self.prompts)
        self.compare("embedded:mnist")  # validates methods, presets, draws and the seeds
        self.draws = tuple(self.draws)

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """The same table on fewer samples and steps and one draw (minutes on 2 CPU cores)."""
        # sized for <= 10 minutes on 2 CPU cores, where the Inception network (~0.5 s per image)
        # dominates: 16 samples (FIDs on so few are only indicative), 10 steps, 10 iterations
        base = dict(
            name="quick", num_samples=16, steps=10, draws=(1,), fp_floor=False,
            calib=CalibConfig(num_samples=8, calib_steps=4, signature_samples=4),
            recon=ReconConfig(iters=10), eval=EvalConfig(ref_num=200),
        )  # fmt: skip
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def runs(self, model: str, preset: str, method: str) -> bool:
        """Whether ``method`` runs on ``model`` at ``preset`` (ablations only where configured)."""
        return method not in ABLATIONS or (model in self.ablation_models and preset in self.ablation_presets)

    def compare(self, model: str, methods: tuple[str, ...] | None = None, text: bool = False) -> CompareConfig:
        """The comparison of ``methods`` (default all) on ``model`` (``text``: a text-conditioned one, which
        gets the prompts)."""
        return CompareConfig(methods=self.methods if methods is None else methods, presets=self.presets,
                             draws=self.draws, eval_seed=self.seed, num_samples=self.num_samples, steps=self.steps,
                             groups=self.groups, calib=self.calib, recon=self.recon, diagnose=self.diagnose,
                             fp_floor=self.fp_floor, layer_bits=self.layer_bits,
                             smoothing=self.smoothing, prompts=self.prompts if text else ())  # fmt: skip


class Results:
    """The results file: rows plus settings and machine, rewritten after every row."""

    def __init__(self, path: Path, cfg: BenchConfig, resume: bool) -> None:
        self.path = path
        self.data: dict[str, Any] = {"rows": [], "reports": {}, "samples": {}}
        if resume and path.is_file():
            self.data = json.loads(path.read_text())
            _check_same_settings(self.data.get("config", {}), cfg.to_dict(), path)
        self._prior_seconds = float(self.data.get("wall_seconds", 0.0))  # earlier parts of a resumed run
        self._start = time.perf_counter()
        protocol = PROTOCOL.format(seed=cfg.seed, draws=list(cfg.draws), tuned_on=cfg.tuned_on)
        self.data.update({"config": cfg.to_dict(), **provenance(), "machine": machine_description(),
                          "protocol": protocol})  # fmt: skip

    def has(self, model: str, method: str, preset: str, draw: int | None = None) -> bool:
        return any(r["model"] == model and r["method"] == method and r.get("preset") == preset
                   and r.get("draw") == draw for r in self.data["rows"])  # fmt: skip

    def add(self, run: Run) -> None:
        row = run.row
        self.data["rows"].append(row)
        if run.report is not None:
            self.data["reports"][f"{row['model']}|{row['method']}|{row['preset']}|{row['draw']}"] = run.report
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.data["wall_seconds"] = self._prior_seconds + time.perf_counter() - self._start
        self.data["summary"] = summarize(self.data["rows"])
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


# what a resumed run may change: which rows it adds, not how a row is made
_ROW_SET_KEYS = ("name", "models", "methods", "presets", "draws", "ablation_models", "ablation_presets")


def _check_same_settings(old: dict[str, Any], new: dict[str, Any], path: Path) -> None:
    """A resumed results file must hold rows made with the same settings (protocol, budget, metrics); the
    reconstruction settings of an older version count at their values today (deleted ones at the value
    that lives on, :meth:`ReconConfig.from_dict`)."""
    defaults = {"layer_bits": [], "smoothing": False, "prompts": []}  # settings older results predate
    old = json.loads(json.dumps({**defaults, **{k: v for k, v in old.items() if k not in _ROW_SET_KEYS}}))
    if isinstance(old.get("recon"), dict):
        try:
            old["recon"] = ReconConfig.from_dict(old["recon"]).to_dict()
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path} holds rows made with reconstruction settings of another version: {err}") from err
    new = json.loads(json.dumps({k: v for k, v in new.items() if k not in _ROW_SET_KEYS}))
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        raise ValueError(f"{path} holds rows made with other settings ({', '.join(differ)} differ): move it "
                         "away or drop --resume; rows of two settings are never mixed in one table")  # fmt: skip


def run_benchmark(cfg: BenchConfig, out_dir: str | Path = "benchmarks", resume: bool = False) -> Path:
    """Run every model x draw x preset x method; returns the results JSON path."""
    out = Path(out_dir)
    results = Results(out / "results" / f"{cfg.name}.json", cfg, resume)
    models = {spec: _load(spec, cfg.null_class) for spec in cfg.models}  # every spec checked before any work
    for model in models.values():
        prompts = list(cfg.prompts) if model.kind == "text" else None
        check_conditioning(model, Conditioning(prompts=prompts), SamplerConfig(guidance_scale=model.default_guidance))
    if cfg.prompts and all(model.kind != "text" for model in models.values()):
        raise ValueError("--prompts is for text-conditioned pipelines; no model of this run is one")
    evaluators = {mnist: Evaluator(dataclasses.replace(cfg.eval, mnist=mnist))
                  for mnist in {is_embedded(spec) for spec in cfg.models}}  # fmt: skip
    # the main methods on every model first, then the ablations (so a cut-short run has the table)
    phases = [tuple(m for m in cfg.methods if m not in ABLATIONS), tuple(m for m in cfg.methods if m in ABLATIONS)]
    for methods in phases:
        for spec, model in models.items():
            methods_here = tuple(m for m in methods if any(cfg.runs(spec, p, m) for p in cfg.presets))
            label = lambda p: row_preset(p, cfg.layer_bits, cfg.smoothing)  # noqa: E731
            todo = [(m, p, d) for d in cfg.draws for p in cfg.presets for m in methods_here
                    if cfg.runs(spec, p, m) and not results.has(spec, m, label(p), d)]  # fmt: skip
            if todo or not results.has(spec, "fp32", "fp32"):
                _bench_model(cfg, model, methods_here, todo, results, evaluators[is_embedded(spec)], out)
    write_markdown(results.data, out / "results" / f"{cfg.name}.md")
    from .bench_figures import write_figures

    write_figures(results.data, out / "figures", cfg.name)
    return results.path


def _load(spec: str, null_class: int | None) -> DiffusionModel:
    return load_model(spec, None if is_embedded(spec) else null_class)


def _bench_model(
    cfg: BenchConfig,
    model: DiffusionModel,
    methods: tuple[str, ...],
    todo: list[tuple[str, str, int]],
    results: Results,
    evaluator: Evaluator,
    out: Path,
) -> None:
    """FP row (once) and the (method, preset, draw) runs of ``todo`` for one model; sample grids."""
    spec = model.spec
    grids: dict[str, torch.Tensor] = {}

    def keep(run: Run) -> None:
        results.add(run)
        if run.row["method"] != "fp32" and run.row["draw"] == cfg.draws[0]:
            grids[f"{run.row['method']} {run.row['preset']}"] = run.images[:64]

    wanted = set(todo)
    fp = compare_methods(model, cfg.compare(spec, methods, model.kind == "text"), evaluator, keep,
                         skip=lambda m, p, d: (m, p, d) not in wanted,
                         fp_row=not results.has(spec, "fp32", "fp32"))  # fmt: skip
    grids = {"fp32": fp.images[:64], **grids}
    key = f"{spec}|{'ablations' if methods and methods[0] in ABLATIONS else 'main'}"
    results.data["samples"][key] = _save_grids(grids, out / "figures", key, cfg.name)
    results.save()


def _save_grids(grids: dict[str, torch.Tensor], folder: Path, spec: str, name: str) -> str:
    from .sampling import side_by_side

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_{spec.replace(':', '_').replace('|', '_')}_samples.png"
    side_by_side(grids, path)
    return str(path)


def write_markdown(data: dict[str, Any], path: Path) -> Path:
    """The results as markdown: settings, machine, the summary over draws, the paired records, every row."""
    m, c = data["machine"], data["config"]
    text = (
        f"# Benchmark `{c['name']}`\n\n{c['num_samples']} samples per model, DDIM {c['steps']} steps, "
        f"reconstruction {c['recon']['iters']} iterations per block, G = {c['groups']}, "
        f"FID reference: {c['eval'].get('ref') or str(c['eval']['ref_num']) + ' MNIST test images'}.\n\n"
        f"Protocol: {data.get('protocol', '')}.\n\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads).\n\n"
        + (f"Wall time of the run: {data['wall_seconds'] / 60:.1f} minutes.\n\n" if "wall_seconds" in data else "")
        + "## Over the calibration draws\n\n" + summary_table(data) + "\n\n"
        + "## Paired records (PSNR; wins out of the common draws, and the verdict on the mean)\n\n"
        + paired_table(data) + "\n\n## Every run\n\n"
        + markdown_table(data["rows"], ROW_COLUMNS) + "\n"
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


ROW_COLUMNS = ("model", "method", "preset", "draw", "groups", "wbits_eff", "abits_eff", "fid_data", "fid_fp",
               "fid_fp_floor", "psnr", "psnr_se", "haze", "speckle", "accuracy", "calib_seconds",
               "ckpt_bytes")  # fmt: skip


def _effective_bits(rows: list[dict[str, Any]]) -> str:
    """``W6A6.3``: the bits averaged over the multiply-accumulates (empty for rows of older versions)."""
    row = next((r for r in rows if r.get("wbits_eff") is not None), None)
    if row is None:
        return ""
    return bits_label(row["wbits_eff"], row["abits_eff"])


def _spread(s: dict[str, Any], metric: str, digits: int = 2) -> str:
    v = s.get(metric)
    if v is None:
        return ""
    if v["n"] == 1:
        return f"{v['mean']:.{digits}f}"
    return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"


def summary_table(data: dict[str, Any]) -> str:
    """Mean ± standard deviation over the draws (min-max of PSNR) per model, preset and method."""
    lines = ["| model | preset | method | eff. bits | draws | PSNR (dB) | PSNR min-max | FID vs FP | FID vs data "
             "| haze | speckle | accuracy | calib s |", "|---" * 13 + "|"]  # fmt: skip
    for s in sorted(data.get("summary", []), key=lambda s: (s["model"], s["preset"], s["method"])):
        p = s.get("psnr")
        span = f"{p['min']:.2f}-{p['max']:.2f}" if p else ""
        rows = [
            r for r in data["rows"] if (r["model"], r["preset"], r["method"]) == (s["model"], s["preset"], s["method"])
        ]
        calib = [r["calib_seconds"] for r in rows if r.get("calib_seconds") is not None]
        lines.append(f"| {s['model']} | {s['preset']} | {s['method']} | {_effective_bits(rows)} | {len(s['draws'])} | "
                     f"{_spread(s, 'psnr')} | "
                     f"{span} | {_spread(s, 'fid_fp')} | {_spread(s, 'fid_data')} | {_spread(s, 'haze', 4)} | "
                     f"{_spread(s, 'speckle', 4)} | {_spread(s, 'accuracy', 3)} | "
                     f"{sum(calib) / len(calib) if calib else float('nan'):.0f} |")  # fmt: skip
    return "\n".join(lines)


def paired_table(data: dict[str, Any], metric: str = "psnr") -> str:
    """``wins/n verdict`` of each method (rows) against each other (columns) on ``metric``."""
    summary = data.get("summary", [])
    methods = sorted({s["method"] for s in summary})
    lines = ["| model | preset | method | " + " | ".join(f"vs {m}" for m in methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]  # fmt: skip
    for s in sorted(summary, key=lambda s: (s["model"], s["preset"], s["method"])):
        cells = []
        for other in methods:
            rec = s["paired"].get(other, {}).get(metric)
            cells.append(f"{rec['wins']}/{rec['n']} {rec['verdict']}" if rec else "")
        lines.append(f"| {s['model']} | {s['preset']} | {s['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
