"""Which part or setting of block reconstruction helps or hurts? PSNR of quantized samples vs FP.

Runs methods at presets with variants of the reconstruction settings (parts switched off,
learning rates, iterations), on the same calibration data and the same sampling noise, and
prints one line per run (and JSON at the end, with the machine). Use a noise seed other than
the benchmark's (``--seed 2``; the benchmark samples with seed 0) when choosing settings, so
the benchmark stays a held-out measurement.

    python scripts/recon_diagnosis.py --methods qdiffusion --presets w6a6          # parts on/off
    python scripts/recon_diagnosis.py --seed 2 --variants '{"low": {"lr_rounding": 1e-3}}'
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

import adpdm
from adpdm.calib.data import CalibrationSet, record_trajectories
from adpdm.embedded import load_embedded
from adpdm.eval.metrics import psnr
from adpdm.ptq import CalibConfig, run_ptq
from adpdm.recon.reconstruct import ReconConfig
from adpdm.sampling import SamplerConfig, eps_sensitivity, sample
from adpdm.utils.resources import machine_description

logger = logging.getLogger("recon_diagnosis")

PARTS = {
    "full": {},
    "no learned act scales": {"learn_act_scales": False},
    "no learned rounding": {"learn_rounding": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mnist", help="embedded model name (default mnist)")
    parser.add_argument("--methods", default="qdiffusion", help="comma-separated registry names")
    parser.add_argument("--presets", default="w6a6", help="comma-separated presets")
    parser.add_argument("--variants", help="JSON {name: ReconConfig overrides} (default: parts on/off)")
    parser.add_argument("--iters", type=int, default=50, help="iterations unless a variant sets them")
    parser.add_argument("--num", type=int, default=64, help="samples compared (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="sampling noise seed (default 0)")
    parser.add_argument("--calib-seeds", default="1", help="comma-separated seeds of the calibration trajectories")
    parser.add_argument("--calib", default="{}", help="JSON CalibConfig overrides (e.g. num_samples)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="write the JSON here")
    parser.add_argument("--report", help="only re-render the summary of this results JSON")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return
    logging.basicConfig(level=logging.WARNING)
    variants = json.loads(args.variants) if args.variants else PARTS
    k = 20
    model = load_embedded(args.model)
    unet = model.unet.to(args.device)
    sampler = SamplerConfig(num_steps=k, seed=args.seed)
    kw = dict(num_classes=model.num_classes, null_class=model.null_class)
    if model.num_classes is not None:
        sampler = dataclasses.replace(sampler, guidance_scale=2.0)
    fp = sample(unet, model.scheduler_config, args.num, sampler, progress=False, device=args.device, **kw).images
    held_out = record_trajectories(unet, model.scheduler_config, 16, sampler, progress=False, **kw)
    fp_out = _denoise(unet, held_out, args.device)
    rows = []
    runs = [(int(c), p, m, v) for c in args.calib_seeds.split(",") for p in args.presets.split(",")
            for m in args.methods.split(",") for v in variants]  # fmt: skip
    for calib_seed, preset, method, name in runs:
        overrides = variants[name]
        calib = CalibConfig(**{"num_samples": 16, "calib_steps": 6, "signature_samples": 4, **json.loads(args.calib)},
                            sampler=dataclasses.replace(sampler, seed=calib_seed))  # fmt: skip
        start = time.perf_counter()
        recon = ReconConfig(**{"iters": args.iters, **overrides})
        qcfg = adpdm.QuantConfig.preset(preset, num_steps=k)
        res = run_ptq(copy.deepcopy(unet), model.scheduler_config, method, qcfg, calib, recon, progress=False,
                      device=args.device, **kw)  # fmt: skip
        q = res.model
        out = sample(q, model.scheduler_config, args.num, sampler, progress=False, device=args.device, **kw)
        seconds = time.perf_counter() - start
        value = float(psnr(out.images, fp).mean())
        step_err = _step_error(_denoise(q, held_out, args.device), fp_out, held_out)
        rows.append({"method": method, "preset": preset, "variant": name, "calib_seed": calib_seed,
                     "recon": recon.to_dict(), "calib": calib.to_dict(), "psnr": value, "step_error": step_err,
                     "selected_steps": res.report["selected_steps"], "partition": res.report["partition"],
                     "seconds": seconds})  # fmt: skip
        logger.warning("calib seed %d %s %s %s: PSNR %.2f dB, mean step error %.4f (%.0fs)", calib_seed, method,
                       preset, name, value, sum(step_err) / len(step_err), seconds)  # fmt: skip
        logger.warning("  step errors %s", " ".join(f"{e:.3f}" for e in step_err))
        logger.warning("  steps %s, partition %s", res.report["selected_steps"], res.report["partition"])
        if args.out:
            _write(args, rows)
    _write(args, rows)


@torch.no_grad()
def _denoise(unet: torch.nn.Module, data: CalibrationSet, device: str) -> torch.Tensor:
    """The denoiser's output on every recorded FP input (teacher forcing: no error accumulates)."""
    outs = []
    for rows in data.batches(64):
        x, t, step, cond = data.model_inputs(rows, device)
        with adpdm.step_context(step.to(device)):
            outs.append(unet(x, t, **cond).sample.float().cpu())
    return torch.cat(outs)


def _step_error(out: torch.Tensor, ref: torch.Tensor, data: CalibrationSet) -> list[float]:
    """Relative squared error ||out - ref||^2 / ||ref||^2 of every sampling step, on held-out trajectories."""
    err = (out - ref).flatten(1).pow(2).sum(1)
    norm = ref.flatten(1).pow(2).sum(1)
    k = data.num_steps
    num = torch.zeros(k).index_add_(0, data.step, err)
    den = torch.zeros(k).index_add_(0, data.step, norm)
    return (num / den.clamp_min(1e-12)).tolist()


def trajectory_error(step_error: list[float], sens: torch.Tensor) -> float:
    """sum_k b_k^2 e_k: each step's relative output error weighted by how far it moves the sampler's next state."""
    return float((torch.tensor(step_error, dtype=torch.float64) * sens.double().pow(2)).sum())


def summary(rows: list[dict], sens: torch.Tensor | None = None) -> list[dict]:
    """PSNR mean, standard deviation, min and max over calibration seeds per method, preset and variant;
    with ``sens`` (:func:`adpdm.sampling.eps_sensitivity`) also the mean step and trajectory errors."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["preset"], r["variant"]), []).append(r)
    out = []
    for (method, preset, variant), runs in groups.items():
        v = torch.tensor([r["psnr"] for r in runs], dtype=torch.float64)
        std = float(v.std()) if len(runs) > 1 else 0.0
        row = {"method": method, "preset": preset, "variant": variant, "seeds": len(runs), "psnr_mean": float(v.mean()),
               "psnr_std": std, "psnr_min": float(v.min()), "psnr_max": float(v.max())}  # fmt: skip
        if sens is not None and all("step_error" in r for r in runs):
            row["step_error_mean"] = sum(sum(r["step_error"]) / len(r["step_error"]) for r in runs) / len(runs)
            row["trajectory_error_mean"] = sum(trajectory_error(r["step_error"], sens) for r in runs) / len(runs)
        out.append(row)
    return out


def _spearman(a: list[float], b: list[float]) -> float:
    ra, rb = (torch.tensor(x, dtype=torch.float64).argsort().argsort().double() for x in (a, b))
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def markdown(rows: list[dict], sens: torch.Tensor | None = None) -> str:
    """The summary as a markdown table, and how well each error measure ranks the runs' PSNR."""
    errors = sens is not None and all("step_error" in r for r in rows)
    head = "| preset | method | variant | seeds | PSNR mean ± std (dB) | min-max |"
    lines = [head + (" mean step error | trajectory error |" if errors else ""), "|---" * (8 if errors else 6) + "|"]
    for s in sorted(summary(rows, sens), key=lambda s: (s["preset"], -s["psnr_mean"])):
        spread = f"{s['psnr_mean']:.2f} ± {s['psnr_std']:.2f} | {s['psnr_min']:.2f}-{s['psnr_max']:.2f}"
        line = f"| {s['preset']} | {s['method']} | {s['variant']} | {s['seeds']} | {spread} |"
        if errors:
            line += f" {s['step_error_mean']:.4f} | {s['trajectory_error_mean']:.5f} |"
        lines.append(line)
    if errors:
        lines += ["", "Spearman correlation of the runs' PSNR with their error, per preset (negative: a lower "
                  "error ranks with a higher PSNR):", ""]  # fmt: skip
        for preset in sorted({r["preset"] for r in rows}):
            runs = [r for r in rows if r["preset"] == preset and r["method"] not in ("rtn",)]
            psnr = [r["psnr"] for r in runs]
            mean = [sum(r["step_error"]) / len(r["step_error"]) for r in runs]
            traj = [trajectory_error(r["step_error"], sens) for r in runs]
            lines.append(f"- {preset} ({len(runs)} runs, rtn left out): mean step error {_spearman(psnr, mean):+.2f}, "
                         f"trajectory error {_spearman(psnr, traj):+.2f}")  # fmt: skip
    return "\n".join(lines)


def sensitivity(model_name: str, steps: int) -> torch.Tensor:
    """:func:`eps_sensitivity` of the embedded model's DDIM sampler with ``steps`` steps."""
    return eps_sensitivity(load_embedded(model_name).scheduler_config, SamplerConfig(num_steps=steps))


def _write(args: argparse.Namespace, rows: list[dict]) -> None:
    sens = sensitivity(args.model, len(rows[0]["step_error"])) if rows else None
    text = json.dumps({"model": args.model, "num_samples": args.num, "seed": args.seed, "rows": rows,
                       "summary": summary(rows, sens), "machine": machine_description()}, indent=1)  # fmt: skip
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".md").write_text(markdown(rows, sens) + "\n")
    else:
        print(text)


def report(path: str) -> None:
    """Re-render ``path``'s summary and markdown (next to it) from its rows."""
    data = json.loads(Path(path).read_text())
    sens = sensitivity(data["model"], len(data["rows"][0]["step_error"]))
    data["summary"] = summary(data["rows"], sens)
    Path(path).write_text(json.dumps(data, indent=1))
    text = f"# `{data['model']}`: {data['num_samples']} samples, noise seed {data['seed']}\n\n"
    Path(path).with_suffix(".md").write_text(text + markdown(data["rows"], sens) + "\n")


if __name__ == "__main__":
    main()
