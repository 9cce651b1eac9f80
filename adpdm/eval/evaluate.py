"""Evaluate samples of a (quantized) model: FID against data and against FP samples, PSNR, accuracy.

All models are compared on common random numbers: sample i of every model starts from the
same noise, so per-sample PSNR against the FP sample is meaningful.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .classifier import MnistClassifier, load_classifier
from .frechet import FeatureStats
from .inception import InceptionFeatures, image_stats, load_inception, reference_stats
from .metrics import fid_from_features, psnr, summarize_psnr

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """What to measure.

    Args:
        ref_num: MNIST test images in the reference statistics of FID against data.
        inception_path: a TorchScript FID Inception file (default: the packaged one).
        bf16: bfloat16 autocast for Inception (faster on AMX CPUs; never mix with fp32 stats).
        inception: compute the Inception FIDs (off: classifier-feature FID only, much faster).
    """

    ref_num: int = 10_000
    inception_path: str | None = None
    bf16: bool = False
    inception: bool = True

    def __post_init__(self) -> None:
        if not 2 <= self.ref_num <= 10_000:
            raise ValueError(f"EvalConfig.ref_num must be in [2, 10000], got {self.ref_num}")


@dataclass
class EvalResult:
    """Metrics of one set of samples (``None`` where not applicable)."""

    num_samples: int
    fid_data: float | None = None  # Inception FID against the MNIST test set
    fid_fp: float | None = None  # Inception FID against the FP model's samples (same noise)
    psnr: float | None = None  # mean per-sample PSNR (dB) against the FP samples, capped at 100
    accuracy: float | None = None  # classifier accuracy on the intended labels (conditional)
    clf_fid_data: float | None = None  # classifier-feature FID against the MNIST test set
    clf_fid_fp: float | None = None  # classifier-feature FID against the FP samples
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Evaluator:
    """Holds the feature extractors and reference statistics so several models share them."""

    def __init__(self, cfg: EvalConfig, device: torch.device | str | None = None, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        self.classifier: MnistClassifier = load_classifier().to(device or "cpu")
        self.inception: InceptionFeatures | None = None
        self._ref: FeatureStats | None = None
        self._clf_ref: FeatureStats | None = None
        self._fp_stats: tuple | None = None  # (FP images, their version, their Inception statistics)
        if cfg.inception:
            self.inception = load_inception(cfg.inception_path, device=device, bf16=cfg.bf16)

    def reference(self) -> FeatureStats:
        if self._ref is None:
            self._ref = reference_stats(self.inception, self.cfg.ref_num, progress=self.progress)
        return self._ref

    def classifier_reference(self) -> FeatureStats:
        if self._clf_ref is None:
            from ..data.mnist import load_mnist

            self._clf_ref = FeatureStats.from_features(self._clf_features(load_mnist("test")[0][: self.cfg.ref_num]))
        return self._clf_ref

    @torch.no_grad()
    def _clf_features(self, images: torch.Tensor) -> torch.Tensor:
        dev = next(self.classifier.parameters()).device
        return torch.cat([self.classifier.features(b.to(dev)).cpu() for b in images.split(500)])

    def inception_stats(self, images: torch.Tensor) -> FeatureStats | None:
        if self.inception is None:
            return None
        return image_stats(self.inception, images, progress=self.progress)

    def fp_inception_stats(self, images: torch.Tensor) -> FeatureStats | None:
        """:meth:`inception_stats`, reused while the very same tensor comes back unchanged (the FP
        samples, compared against every method in turn). The tensor is held, so its memory cannot
        be reused by another."""
        hit = self._fp_stats is not None and self._fp_stats[0] is images and self._fp_stats[1] == images._version
        if not hit:
            self._fp_stats = (images, images._version, self.inception_stats(images))
        return self._fp_stats[2]

    def evaluate(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        fp_images: torch.Tensor | None = None,
        fp_stats: FeatureStats | None = None,
        skip_inception: bool = False,
    ) -> EvalResult:
        """Metrics of ``images`` (N, 1, 32, 32) in [-1, 1].

        Args:
            images: the samples.
            labels: intended class labels (conditional models) for the accuracy.
            fp_images: FP samples from the same noise (for PSNR and the FID against FP).
            fp_stats: Inception statistics of ``fp_images`` if already computed.
            skip_inception: leave the Inception FIDs to the caller.
        """
        res = EvalResult(num_samples=len(images))
        clf_feats = self._clf_features(images)
        res.clf_fid_data = fid_from_features(clf_feats, self.classifier_reference())
        if labels is not None:
            dev = next(self.classifier.parameters()).device
            pred = torch.cat([self.classifier(b.to(dev)).argmax(1).cpu() for b in images.split(500)])
            res.accuracy = float((pred == labels.cpu()).float().mean())
        stats = self.inception_stats(images) if not skip_inception else None
        if stats is not None:
            res.fid_data = fid_from_features(stats, self.reference())
        if fp_images is not None:
            summary = summarize_psnr(psnr(images, fp_images))
            res.psnr = summary.mean_capped
            res.extra["psnr_median"] = summary.median
            res.clf_fid_fp = fid_from_features(clf_feats, self._clf_features(fp_images))
            if stats is not None:
                res.fid_fp = fid_from_features(stats, fp_stats or self.inception_stats(fp_images))
        return res


@dataclass
class ModelSamples:
    """Samples of one model, drawn with the common random numbers of a sampler config."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None
    seconds: float


def sample_models(
    unets: dict[str, torch.nn.Module],
    scheduler_config: dict,
    num: int,
    sampler: Any,
    num_classes: int | None = None,
    null_class: int | None = None,
    progress: bool = True,
    state: Any = None,
) -> dict[str, ModelSamples]:
    """Sample every model from the same noise (common random numbers).

    With an ``accelerate`` ``state`` the batches are spread over its processes, and every process
    gets all the samples, in the order of a one-process run.
    """
    import time

    from ..distributed import sample_distributed
    from ..sampling import sample

    out = {}
    for name, unet in unets.items():
        start = time.perf_counter()
        kw = dict(num_classes=num_classes, null_class=null_class)
        if state is None:
            res = sample(unet, scheduler_config, num, sampler, progress=progress, **kw)
        else:
            res = sample_distributed(unet, scheduler_config, num, sampler, state=state,
                                     progress=progress and state.is_main_process, **kw)  # fmt: skip
        out[name] = ModelSamples(name, res.images, res.labels, time.perf_counter() - start)
        logger.info("sampled %d images from %s in %.1fs", num, name, out[name].seconds)
    return out


def evaluate_against_fp(
    evaluator: Evaluator, samples: dict[str, ModelSamples], fp_name: str, conditional: bool
) -> dict[str, EvalResult]:
    """Metrics of every model's samples; PSNR and FID-vs-FP against ``samples[fp_name]``."""
    fp = samples[fp_name]
    fp_stats = evaluator.fp_inception_stats(fp.images)
    results = {}
    for name, s in samples.items():
        labels = s.labels if conditional else None
        if name == fp_name:
            res = evaluator.evaluate(s.images, labels, skip_inception=True)
            if fp_stats is not None:
                res.fid_data = fid_from_features(fp_stats, evaluator.reference())
        else:
            res = evaluator.evaluate(s.images, labels, fp_images=fp.images, fp_stats=fp_stats)
        res.extra["sampling_seconds"] = s.seconds
        results[name] = res
    return results
