"""Does `adpdm analyze --suggest` help? All-layers error of the suggested mixed precision.

Reads ANALYZE/<model>_<preset>/analysis.json (written by scripts/analyze_all.sh; ANALYZE defaults to
benchmarks/results/analyze, its output folder), and for W6A6 and W4A8 of both embedded models measures the
trajectory-weighted all-layers error (same trajectories: 8 samples, 20 steps, seed 1) with conv_in / conv_out
at W8A8 (first_last_bits=8) and with the layers `suggest` keeps at 8 bits for budgets 0.002 and 0.05.
Usage: PYTHONPATH=. .venv/bin/python studies/mixed-precision-suggest/analyze_suggest_check.py [ANALYZE] \
    > studies/mixed-precision-suggest/results/suggest_check.txt
"""

from __future__ import annotations

import sys
import time

import torch

from adpdm.analysis import AnalyzeConfig, SensitivityReport, analyze, suggest
from adpdm.config import QuantConfig
from adpdm.models.loading import load_model

ROOT = sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/analyze"
# only conv_in gets a per-layer row: the all-layers error is what is wanted here
CFG = AnalyzeConfig(num_samples=8, steps=20, seed=1, layers=("conv_in",), progress=False)


def main() -> None:
    torch.set_num_threads(1)
    for model, preset in [("mnist", "w6a6"), ("mnist", "w4a8"), ("mnist-cond", "w6a6"), ("mnist-cond", "w4a8")]:
        ref = SensitivityReport.load(f"{ROOT}/{model}_{preset}/analysis.json")
        fp = load_model(f"embedded:{model}")
        variants = {"first_last_bits=8 (conv_in, conv_out W8A8)": {"first_last_bits": 8}}
        for budget in ("0.002", "0.05"):
            s = suggest(ref, budget)
            keep = tuple((p, 8, 8) for p in s.patterns)
            variants[f"suggest {budget} ({len(s.patterns)} layers, {s.extra_bytes} B)"] = {"layer_bits": keep}
        a = ref.all_layers
        print(f"{model} {preset}: preset all-layers score {a.score:.3g} (step 19: {a.per_step[-1]:.3g})", flush=True)
        for name, overrides in variants.items():
            start = time.time()
            r = analyze(fp, QuantConfig.preset(preset, num_steps=20, **overrides), CFG).all_layers
            print(f"   {name}: all-layers score {r.score:.3g} (x{r.score / a.score:.2f}), "
                  f"step 19: {r.per_step[-1]:.3g}  [{time.time() - start:.0f} s]", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
