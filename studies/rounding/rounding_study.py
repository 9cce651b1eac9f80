"""Which learned rounding should reconstruction use? AdaRound against SignRound, on validation noise.

qdiffusion on ``embedded:mnist`` (the benchmark's settings: DDIM 20 steps, 16 calibration
trajectories, 6 calibration steps), for each preset, calibration draw and iteration budget, with
``ReconConfig.rounding`` "adaround" and "sign"; as references rtn and qdiffusion's start (its own
ranges, round to nearest, nothing learned: rounding "none"). Each model samples 64 images from
noise seed 7 (validation noise: the benchmark evaluates on seed 0) and is scored by PSNR
against the FP samples of the same noise. Per unit it also records, right after the optimisation
and before hardening: the share of undecided AdaRound variables (h(V) in (0.01, 0.99)) and the
fit-row error with the soft weights the optimiser saw against the hard weights that are deployed.

Usage (rows are appended to the results file; rows already there are skipped)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python studies/rounding/rounding_study.py --presets w8a8 w4a8 w6a6 \
        --draws 1 2
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python studies/rounding/rounding_study.py --presets w8a8 w4a8 w6a6 \
        --draws 1 2 --iters 50 --roundings sign --holdout 0    # what holding out trajectories costs
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from adpdm import QuantConfig
from adpdm.eval.evaluate import sample_models
from adpdm.eval.metrics import psnr
from adpdm.models.loading import load_model
from adpdm.ptq import CalibConfig, run_ptq
from adpdm.quantize import set_state
from adpdm.recon import reconstruct as recon_module
from adpdm.recon.reconstruct import ReconConfig
from adpdm.sampling import SamplerConfig
from adpdm.state import QuantState
from adpdm.utils.resources import machine_description

OUT = Path(__file__).resolve().parent / "results" / "rounding_study.json"
MODEL = "embedded:mnist"
STEPS, SAMPLES, EVAL_SEED = 20, 64, 7


class SoftHardProbe:
    """Wraps ``_optimise``: the fit-row error with soft and with hard rounding, before hardening."""

    def __init__(self) -> None:
        self.units: list[dict] = []
        self.real = recon_module._optimise

    def __call__(self, unit, inputs, target, steps, fit, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN204
        self.real(unit, inputs, target, steps, fit, *args, **kwargs)
        batch = args[3].capture_batch  # args: layers, quantizers, search, cfg, ...
        hard = recon_module._error(unit, inputs, target, steps, fit, batch)
        set_state(unit.module, QuantState.RECONSTRUCTING)
        try:
            soft = recon_module._error(unit, inputs, target, steps, fit, batch)
        finally:
            set_state(unit.module, QuantState.CALIBRATED)
        self.units.append({"name": unit.name, "fit_soft": soft, "fit_hard": hard})


def _summary(report: dict, probe: SoftHardProbe) -> dict:
    losses = report["unit_losses"]
    gaps = [u["fit_hard"] / max(u["fit_soft"], 1e-12) for u in probe.units]
    undecided = [u["undecided"] for u in losses if u["undecided"] is not None]
    return {
        "units": len(losses),
        "kept_start": sum(u["kept"] == "start" for u in losses),
        "undecided_mean": statistics.mean(undecided) if undecided else None,
        "undecided_max": max(undecided) if undecided else None,
        "hard_over_soft_median": statistics.median(gaps) if gaps else None,
        "hard_over_soft_max": max(gaps) if gaps else None,
        "heldout_start_sum": sum(u["rec_before"] for u in losses),
        "heldout_reconstructed_sum": sum(u["heldout_reconstructed"] for u in losses),
        "heldout_kept_sum": sum(u["rec_after"] for u in losses),
        "unit_losses": [{**u, **p} for u, p in zip(losses, probe.units, strict=True)],
    }


def run_one(model, fp_images, sampler, preset: str, draw: int, method: str, recon: ReconConfig | None) -> dict:  # noqa: ANN001
    calib = CalibConfig(num_samples=16, calib_steps=6, signature_samples=4,
                        sampler=SamplerConfig(num_steps=STEPS, seed=draw))  # fmt: skip
    probe = SoftHardProbe()
    recon_module._optimise = probe
    start = time.perf_counter()
    try:
        res = run_ptq(copy.deepcopy(model.unet), model.scheduler_config, method,
                      QuantConfig.preset(preset, num_steps=STEPS), calib, recon, progress=False)  # fmt: skip
    finally:
        recon_module._optimise = probe.real
    images = sample_models({method: res.model}, model, SAMPLES, sampler, progress=False)[method].images
    v = psnr(images, fp_images).clamp_max(100.0)
    row = {
        "preset": preset, "draw": draw, "method": method,
        "rounding": None if recon is None else recon.rounding, "iters": None if recon is None else recon.iters,
        "holdout": None if recon is None else recon.holdout,
        "psnr": float(v.mean()), "psnr_se": float(v.std() / len(v) ** 0.5),
        "calib_seconds": res.report["calib_seconds"], "row_seconds": time.perf_counter() - start,
    }  # fmt: skip
    if recon is not None:
        row.update(_summary(res.report, probe))
    return row


def _paired(rows: list[dict], a: dict, b: dict) -> dict:
    """PSNR of the rows matching ``a`` minus those matching ``b``, paired by (preset, draw, iters)."""

    def pick(match: dict) -> dict:
        return {(r["preset"], r["draw"], r["iters"]): r["psnr"] for r in rows
                if r["method"] == "qdiffusion" and all(r.get(k) == v for k, v in match.items())}  # fmt: skip

    x, y = pick(a), pick(b)
    diffs = {f"{p} draw {d} iters {i}": x[p, d, i] - y[p, d, i] for p, d, i in x if (p, d, i) in y}
    if not diffs:
        return {}
    return {"diff": diffs, "mean": statistics.mean(diffs.values()), "wins": sum(v > 0 for v in diffs.values()),
            "pairs": len(diffs)}  # fmt: skip


def summarise(rows: list[dict]) -> dict:
    """Paired PSNR differences: sign minus adaround (held-out 0.25); held-out 0 minus 0.25 (sign)."""
    default = ReconConfig.holdout
    return {
        "sign_minus_adaround": _paired(rows, {"rounding": "sign", "holdout": default},
                                       {"rounding": "adaround", "holdout": default}),
        "holdout_0_minus_default": _paired(rows, {"rounding": "sign", "holdout": 0.0},
                                           {"rounding": "sign", "holdout": default}),
    }  # fmt: skip


def _line(row: dict) -> str:
    head = f"{row['preset']} draw {row['draw']} {row['method']} {row['rounding']} {row['iters']}"
    line = f"{head}: PSNR {row['psnr']:.2f} +- {row['psnr_se']:.2f} ({row['calib_seconds']:.0f} s)"
    if row["iters"] is None:
        return line
    return (f"{line}, kept start {row['kept_start']}/{row['units']}, undecided {row['undecided_mean']}, "
            f"hard/soft median {row['hard_over_soft_median']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["w8a8", "w4a8"])
    parser.add_argument("--draws", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--iters", nargs="+", type=int, default=[50, 200])
    parser.add_argument("--roundings", nargs="+", default=["adaround", "sign"])
    parser.add_argument("--holdout", type=float, default=ReconConfig.holdout, help="ReconConfig.holdout")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = json.loads(args.out.read_text()) if args.out.is_file() else {"rows": []}
    data.update(model=MODEL, steps=STEPS, num_samples=SAMPLES, eval_seed=EVAL_SEED, machine=machine_description(),
                calib="CalibConfig(num_samples=16, calib_steps=6, signature_samples=4)")  # fmt: skip

    def done(**key) -> bool:  # noqa: ANN003
        return any(all(r.get(k) == v for k, v in key.items()) for r in data["rows"])

    def save(row: dict) -> None:
        data["rows"].append(row)
        data["summary"] = summarise(data["rows"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1))
        print(_line(row), flush=True)

    model = load_model(MODEL)
    sampler = SamplerConfig(num_steps=STEPS, seed=EVAL_SEED)
    fp_images = sample_models({"fp32": model.unet}, model, SAMPLES, sampler, progress=False)["fp32"].images
    for preset in args.presets:
        for draw in args.draws:
            if not done(preset=preset, draw=draw, method="rtn"):
                save(run_one(model, fp_images, sampler, preset, draw, "rtn", None))
            if not done(preset=preset, draw=draw, method="qdiffusion", rounding="none"):  # its start: nothing learned
                recon = ReconConfig(iters=1, rounding="adaround", learn_rounding=False, learn_act_scales=False)
                save({**run_one(model, fp_images, sampler, preset, draw, "qdiffusion", recon), "rounding": "none",
                      "iters": 0})  # fmt: skip
            for iters in args.iters:
                for rounding in args.roundings:
                    key = dict(preset=preset, draw=draw, method="qdiffusion", rounding=rounding, iters=iters)
                    if not done(**key, holdout=args.holdout):
                        recon = ReconConfig(iters=iters, rounding=rounding, holdout=args.holdout)
                        save(run_one(model, fp_images, sampler, preset, draw, "qdiffusion", recon))


if __name__ == "__main__":
    main()
