"""The benchmark's aims read off its results files (default: both models' benchmark files), as markdown tables.

Per model and preset: PSNR against FP per calibration draw for every method; adpdm minus each peer per draw,
with the paired wins and the results file's paired verdict (ahead / tie / behind: the mean paired difference
against its standard deviation); the mean FID against FP; the calibration-time ratio adpdm / qdiffusion per
draw (the classifier-feature FID against FP for files run without Inception); and whether the aim holds
(mean PSNR and mean FID ahead of every peer and at least 3 of 4 paired draws
won; at W8A8 the mean within 0.3 dB of rtn or above it). Per file: the reconstructed units that kept a held-out
error above their start (the aim: none); adpdm against adpdm-g1 (scripts/bench_groups.sh); and the absolute
quality of files of 1,000 samples (scripts/absolute_quality.sh).
Usage: python scripts/verdicts.py [FILE ...] (the rows of all files together, e.g. the two models'
files of scripts/bench_full.sh)
"""

import json
import sys
from statistics import mean

PATHS = sys.argv[1:] or ["benchmarks/results/benchmark_mnist.json", "benchmarks/results/benchmark_mnist-cond.json"]
PEERS = ("rtn", "ptq4dm", "qdiffusion")
files = {path: json.load(open(path)) for path in PATHS}
rows = [r for data in files.values() for r in data["rows"]]
cell = {(r["model"], r["preset"], r["method"], r["draw"]): r for r in rows if r["method"] != "fp32"}
summary = {(s["model"], s["preset"], s["method"]): s for data in files.values() for s in data.get("summary", [])}
models = sorted({k[0] for k in cell})
presets = ("w8a8", "w8a6", "w6a6", "w4a8", "w4a6", "w4a8-strict")


def draws(model, preset, method):
    return sorted(d for (m, p, me, d) in cell if (m, p, me) == (model, preset, method))


def fid_key(model):
    """FID against FP: Inception's, or the classifier-feature one where the rows have no Inception FID."""
    return "fid_fp" if all(r["fid_fp"] is not None for k, r in cell.items() if k[0] == model) else "clf_fid_fp"


for model in models:
    print(f"\n#### {model}\n")
    names = PEERS + ("adpdm",)
    key = fid_key(model)
    fid_name = "FID" if key == "fid_fp" else "classifier-feature FID"
    print("| preset | " + " | ".join(names) + " | adpdm - " + " / ".join(PEERS)
          + f" (wins) | {fid_name} vs FP: " + " / ".join(names) + " | time adpdm / qdiffusion | aim |")  # fmt: skip
    print("|---" * 9 + "|")
    for preset in presets:
        if not all(draws(model, preset, me) for me in names):  # e.g. an absolute-quality file: adpdm only
            continue
        psnr = {me: [cell[model, preset, me, d]["psnr"] for d in draws(model, preset, me)] for me in names}
        fid = {me: mean(cell[model, preset, me, d][key] for d in draws(model, preset, me)) for me in psnr}
        ok, diffs = True, []
        for peer in PEERS:
            common = sorted(set(draws(model, preset, peer)) & set(draws(model, preset, "adpdm")))
            d = [cell[model, preset, "adpdm", x]["psnr"] - cell[model, preset, peer, x]["psnr"] for x in common]
            wins = sum(v > 0 for v in d)
            paired = summary.get((model, preset, "adpdm"), {}).get("paired", {}).get(peer, {}).get("psnr", {})
            verdict = f", {paired['verdict']}" if paired.get("n") == len(d) else ""  # the file's paired verdict
            diffs.append(f"{mean(d):+.2f} ({wins}/{len(d)}{verdict})" if d else "-")
            if preset == "w8a8":
                ok &= peer != "rtn" or mean(d) >= -0.3
            elif not preset.endswith("strict"):
                ok &= bool(d) and mean(d) > 0 and wins >= 3 and fid["adpdm"] < fid[peer]
        common = sorted(set(draws(model, preset, "qdiffusion")) & set(draws(model, preset, "adpdm")))
        secs = {me: [cell[model, preset, me, d]["calib_seconds"] for d in common] for me in ("adpdm", "qdiffusion")}
        ratio = [a / q for a, q in zip(secs["adpdm"], secs["qdiffusion"], strict=True)]
        n = len(psnr["adpdm"])
        aim = "-" if preset.endswith("strict") else ("met" if ok else "missed") if n == 4 else f"open ({n} draws)"
        print(f"| {preset.upper()} | " + " | ".join(" / ".join(f"{v:.2f}" for v in psnr[me]) for me in psnr)
              + " | " + " / ".join(diffs) + " | " + " / ".join(f"{fid[me]:.1f}" for me in fid)
              + " | " + " / ".join(f"{v:.2f}" for v in ratio) + f" | {aim} |")  # fmt: skip


for path, data in files.items():
    units = [(key, u) for key, rep in data["reports"].items() for u in rep.get("unit_losses") or []]
    above = [
        (key, u["name"])
        for key, u in units
        if u["kept"] == "reconstructed" and u["heldout_reconstructed"] > u["rec_before"]
    ]
    print(
        f"\n{path}: {len(units)} reconstructed units in {len(data['reports'])} runs, "
        f"{len(above)} kept a held-out error above their start {above[:5]}"
    )

for model in models:  # where timestep groups pay: adpdm against adpdm-g1 (scripts/bench_groups.sh)
    for preset in presets:
        common = sorted(set(draws(model, preset, "adpdm")) & set(draws(model, preset, "adpdm-g1")))
        if not common:
            continue
        d = [cell[model, preset, "adpdm", x]["psnr"] - cell[model, preset, "adpdm-g1", x]["psnr"] for x in common]
        key = fid_key(model)
        f = [cell[model, preset, "adpdm", x][key] - cell[model, preset, "adpdm-g1", x][key] for x in common]
        print(
            f"groups, {model} {preset.upper()}: adpdm - adpdm-g1 PSNR {' / '.join(f'{v:+.2f}' for v in d)} "
            f"(mean {mean(d):+.2f}, {sum(v > 0 for v in d)}/{len(d)} up), {key} {mean(f):+.1f}"
        )

for data in files.values():  # absolute quality (scripts/absolute_quality.sh): files of 1,000 samples
    if data["config"]["num_samples"] < 1000:
        continue
    fp = {r["model"]: r for r in data["rows"] if r["method"] == "fp32"}
    for r in sorted(data["rows"], key=lambda r: (r["model"], r["preset"], r["draw"] or 0)):
        if r["method"] != "adpdm":
            continue
        fid, fid_fp32 = r["fid_data"], fp[r["model"]]["fid_data"]  # None where the file ran without Inception
        ratio = fid / fid_fp32 if fid is not None else None
        aim = (r["accuracy"] >= 0.95) if r["model"].endswith("cond") else ratio is not None and ratio <= 1.15
        fid_text = f"{fid:.1f} (FP {fid_fp32:.1f}, {ratio:.2f}x)" if ratio is not None else "not measured"
        print(
            f"absolute, {r['model']} {r['preset'].upper()} draw {r['draw']}: FID vs MNIST {fid_text}, classifier-"
            f"feature FID vs MNIST {r['clf_fid_data']:.1f} (FP {fp[r['model']]['clf_fid_data']:.1f}), accuracy "
            f"{r['accuracy']}, aim {'met' if aim else 'missed'}"
        )
