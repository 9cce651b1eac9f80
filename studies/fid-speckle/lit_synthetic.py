"""Does Inception count how many background pixels are lit, or how they are lit? Synthetic changes of the FP
samples' far background (3 or more pixels from ink), scored with the Inception FID against FP and against data:

- "lift L": every far-background pixel raised to 8-bit level L (a uniform gray, lit share 1);
- "speckle": each far-background pixel drawn independently from the level histogram of the quantized samples'
  far background (same lit share, no spatial structure);
- "quant far": the quantized samples' own far background (as ``error_regions.py``'s "far");
- "quant far, shuffled": the same values, shuffled over the far-background pixels of each image;
- "quant far, mean": each image's far background raised by the mean of its own quantized far-background error.

Reads the samples that ``error_regions.py`` saved (run it first with the same PRESET, DRAW, METHOD and num).
Usage: PYTHONPATH=. .venv/bin/python studies/fid-speckle/lit_synthetic.py PRESET DRAW [METHOD] [num]
"""

import logging
import sys
from pathlib import Path

import torch
from haze import far_background, lit_share

from adpdm.eval.evaluate import EvalConfig, Evaluator
from adpdm.eval.metrics import background_speckle, fid_from_features

logging.basicConfig(level=logging.WARNING)
torch.set_num_threads(1)
PRESET, DRAW = sys.argv[1], int(sys.argv[2])
METHOD = sys.argv[3] if len(sys.argv) > 3 else "adpdm"
N = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
cache = Path("/tmp/fid_study") / f"regions_embedded_mnist_{PRESET}_d{DRAW}_{METHOD}_{N}.pt"
if not cache.exists():
    raise SystemExit(f"{cache} not found: run studies/fid-speckle/error_regions.py {PRESET} {DRAW} {METHOD} {N} first")
fp, quant = torch.load(cache, weights_only=True).values()
far = far_background(fp)
gen = torch.Generator().manual_seed(0)
LEVEL = 2.0 / 255  # one 8-bit level in [-1, 1]


def lift(levels: float) -> torch.Tensor:
    return torch.where(far, torch.full_like(fp, -1.0 + levels * LEVEL), fp)


def speckle() -> torch.Tensor:
    """Far-background levels drawn i.i.d. from the quantized samples' far-background level histogram."""
    levels = torch.round((quant + 1) / LEVEL)[far].clamp(max=255)
    hist = torch.bincount(levels.long(), minlength=256).double()
    draws = torch.multinomial(hist / hist.sum(), int(far.sum()), replacement=True, generator=gen)
    out = fp.clone()
    out[far] = -1.0 + draws.float() * LEVEL
    return out


def shuffled() -> torch.Tensor:
    out = fp.clone()
    for i in range(len(fp)):
        m = far[i]
        values = quant[i][m]
        out[i][m] = values[torch.randperm(len(values), generator=gen)]
    return out


def mean_lift() -> torch.Tensor:
    err = (quant - fp) * far
    mean = err.flatten(1).sum(1) / far.flatten(1).sum(1).clamp(min=1)
    return torch.where(far, (fp + mean.view(-1, 1, 1, 1)).clamp(-1, 1), fp)


variants = {
    "lift 1": lambda: lift(1),
    "lift 2": lambda: lift(2),
    "speckle": speckle,
    "quant far": lambda: torch.where(far, quant, fp),
    "quant far, shuffled": shuffled,
    "quant far, mean": mean_lift,
}
ev = Evaluator(EvalConfig(ref_num=2000), progress=False)
fp_stats = ev.inception_stats(fp)
print(f"{PRESET} draw {DRAW} {METHOD} n {N}: fp lit {lit_share(fp, fp):.3f} speckle {background_speckle(fp, fp):.4f} "
      f"fid_data {ev.fid_to_reference(fp_stats):.1f}", flush=True)  # fmt: skip
for name, make in variants.items():
    x = make()
    stats = ev.inception_stats(x)
    print(f"  {name:20s} lit {lit_share(x, fp):.3f} speckle {background_speckle(x, fp):.4f} "
          f"fid_fp {fid_from_features(stats, fp_stats):6.2f} "
          f"fid_data {ev.fid_to_reference(stats):6.2f}", flush=True)  # fmt: skip
