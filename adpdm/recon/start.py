"""What reconstruction starts from and what it must beat, judged on the sampler's own output.

Reconstruction decides unit by unit on one-step errors (:func:`adpdm.ptq` step 6). Those errors
do not see what decides the final image: on ``embedded:mnist`` at W8A8 (validation noise seed 7,
draws 1-2, 256 samples) min-max activation ranges gave samples 1.4-2.5 dB PSNR closer to FP than
the Lp ranges of the recipe (standard error 0.3-0.4 dB), while the one-step error preferred Lp
ranges by up to 15% at the first steps. (The systematic part of the error at the middle steps is
1.5x lower with min-max ranges, but removing it did not close the gap: why the one-step error
ranks them the wrong way round is open, ``studies/range-start/results/judge_study.md``.) So
two whole-model decisions are taken on the sampler's output:

* the activation ranges reconstruction starts from, the recipe's or min-max, whichever gives
  samples closer to FP (:func:`score_starts`);
* the result of reconstruction is kept only if its samples are at least as close to FP as the
  start's, so the run never ends below its start.

:class:`SamplerCheck` takes both, before and after reconstruction (:func:`adpdm.ptq.run_ptq`).

The judge, :class:`SampleJudge`, samples fresh trajectories of the calibration seed (indices after
the recorded ones: data-free, never the evaluation noise) and scores the mean PSNR of the final
samples against the FP model's on the same noise. With 32 trajectories it put both choices with
min-max activation ranges above both with Lp ones on both validation draws, as 256 evaluation
samples did; with 16 it did not (``studies/range-start/results/judge_study.md``).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ..eval.metrics import psnr
from ..quantize import act_quantizers, init_ranges, quantization_disabled
from ..sampling import SamplerConfig, sample

logger = logging.getLogger(__name__)

STARTS = ("recipe", "best")
MINMAX = "minmax"


class SampleJudge:
    """Mean PSNR (dB) of the model's samples against the FP model's, on fixed seeded noise.

    Args:
        model: the quantized model (the FP reference is sampled from it with quantization off).
        scheduler_config: the model's scheduler config.
        sampler: the calibration sampler (its seed, steps and guidance).
        num: trajectories.
        first: index of the first trajectory (after the recorded ones, so that they are fresh).
        num_classes: classes of a conditional model; ``null_class`` its unconditional label.
        device: where to sample.
    """

    def __init__(
        self,
        model: nn.Module,
        scheduler_config: dict,
        sampler: SamplerConfig,
        num: int,
        first: int,
        num_classes: int | None = None,
        null_class: int | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.model, self.scheduler_config, self.sampler, self.num, self.first = (
            model,
            scheduler_config,
            sampler,
            num,
            first,
        )
        self.num_classes, self.null_class, self.device = num_classes, null_class, device
        with quantization_disabled(model):
            self.reference = self._images()

    def _images(self) -> torch.Tensor:
        out = sample(self.model, self.scheduler_config, self.num, self.sampler, num_classes=self.num_classes,
                     null_class=self.null_class, device=self.device, progress=False, first=self.first)  # fmt: skip
        return out.images

    @torch.no_grad()
    def __call__(self) -> float:
        return float(psnr(self._images(), self.reference).mean())


def _act_ranges(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(q.scale.detach().clone(), q.zero_point.clone()) for _, q in act_quantizers(model)]


@torch.no_grad()
def _set_act_ranges(model: nn.Module, ranges: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for (_, q), (scale, zero) in zip(act_quantizers(model), ranges, strict=True):
        q.scale.copy_(scale)
        q.zero_point.copy_(zero)


@torch.no_grad()
def minmax_act_ranges(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Min-max ranges of every activation group, from the observed statistics; the model's ranges
    and range settings are left as they were."""
    saved = _act_ranges(model)
    quantizers = [q for _, q in act_quantizers(model)]
    inits = [q.init for q in quantizers]
    try:
        for q in quantizers:
            q.init = MINMAX
        init_ranges(model, weights=False)
        return _act_ranges(model)
    finally:
        for q, init in zip(quantizers, inits, strict=True):
            q.init = init
        _set_act_ranges(model, saved)


def score_starts(model: nn.Module, judge: SampleJudge) -> tuple[dict[str, float], dict[str, list]]:
    """``judge()`` of the model with the recipe's and with min-max activation ranges, and both sets
    of ranges; the model is left with the recipe's. It must be CALIBRATED with the recipe's
    ranges and hold its observed statistics. Weight ranges stay the recipe's: min-max weight
    ranges moved the score by -0.1 to +0.9 dB at W8A8, inside the judge's noise."""
    ranges = {"recipe": _act_ranges(model), MINMAX: minmax_act_ranges(model)}
    scores = {"recipe": judge()}
    _set_act_ranges(model, ranges[MINMAX])
    scores[MINMAX] = judge()
    _set_act_ranges(model, ranges["recipe"])
    return scores, ranges


def set_start(model: nn.Module, ranges: dict[str, list], name: str) -> None:
    """Set the activation ranges ``name`` ("recipe" or "minmax") of :func:`score_starts`."""
    _set_act_ranges(model, ranges[name])


class SamplerCheck:
    """The whole-model decisions of one run, on ``judge``'s score.

    :meth:`begin` (before reconstruction) scores both starts and sets the better one (``choose``;
    else the recipe's); :meth:`end` (after it) keeps the reconstructed model only if it scores
    at least as high as that start, else restores the start exactly, and returns the report.
    """

    def __init__(self, judge: SampleJudge, choose: bool = True) -> None:
        self.judge, self.choose = judge, choose

    def begin(self, model: nn.Module) -> None:
        self.scores, self.ranges = score_starts(model, self.judge)
        better = MINMAX if self.scores[MINMAX] > self.scores["recipe"] else "recipe"
        self.start = better if self.choose else "recipe"
        set_start(model, self.ranges, self.start)
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}  # off the GPU
        logger.info("reconstruction starts from the %s activation ranges (samples vs FP: recipe %.2f dB, minmax "
                    "%.2f dB)", self.start, self.scores["recipe"], self.scores[MINMAX])  # fmt: skip

    def end(self, model: nn.Module) -> dict[str, Any]:
        """``{"start", "psnr": {"recipe", "minmax", "reconstructed"}, "kept"}``."""
        psnr_db = {**self.scores, "reconstructed": self.judge()}
        kept = "reconstructed" if psnr_db["reconstructed"] >= psnr_db[self.start] else self.start
        if kept != "reconstructed":
            model.load_state_dict(self.state)
        logger.info("samples vs FP (dB): %s: keeping the %s", {k: round(v, 2) for k, v in psnr_db.items()}, kept)
        return {"start": self.start, "psnr": psnr_db, "kept": kept}
