"""Evaluate samples of a (quantized) model: FID against data and against FP samples, PSNR, accuracy.

The data reference is the MNIST test set by default, or the user's images or statistics
(``EvalConfig.ref``); ``EvalConfig.mnist=False`` turns off the MNIST-only metrics.

All models are compared on common random numbers: sample i of every model starts from the
same noise, so per-sample PSNR against the FP sample is meaningful.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .classifier import MnistClassifier, load_classifier
from .frechet import FeatureStats
from .inception import InceptionFeatures, image_stats, load_inception, reference_stats
from .metrics import class_accuracy, confusions, fid_from_features, psnr, summarize_psnr
from .reference import reference_from_path

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """What to measure.

    Args:
        ref_num: MNIST test images in the reference statistics of FID against data (used when
            ``ref`` is None and ``mnist`` is on).
        inception_path: a TorchScript FID Inception file (default: the packaged one).
        bf16: bfloat16 autocast for Inception (faster on AMX CPUs; never mix with fp32 stats).
        inception: compute the Inception FIDs (off: classifier-feature FID only, much faster).
        ref: the reference of ``fid_data``: a folder of PNG/JPEG images or an ``.npz`` of FID
            statistics (``adpdm fid-stats``, pytorch-fid). Default None: the MNIST test set.
        mnist: the MNIST-specific metrics (the shipped classifier's accuracy, ``clf_fid_*``, the
            MNIST reference). Off for other data: the MNIST classifier is never loaded, and
            ``fid_data`` needs ``ref``.
        classifier: a TorchScript classifier, images (N, C, H, W) in [-1, 1] -> logits (N, K);
            when given, it gives the accuracy of conditional models (instead of the MNIST one).
    """

    ref_num: int = 10_000
    inception_path: str | None = None
    bf16: bool = False
    inception: bool = True
    ref: str | None = None
    mnist: bool = True
    classifier: str | None = None

    def __post_init__(self) -> None:
        if not 2 <= self.ref_num <= 10_000:
            raise ValueError(f"EvalConfig.ref_num must be in [2, 10000], got {self.ref_num}")
        if self.ref is not None:
            self.ref = str(self.ref)
            ref = Path(self.ref)
            if not ref.is_dir() and not (ref.is_file() and ref.suffix.lower() == ".npz"):
                what = "does not exist" if not ref.exists() else "is neither a folder nor an .npz file"
                raise ValueError(f"EvalConfig.ref {ref} {what}: give a folder of images or an .npz of FID statistics")
            if not self.inception:
                raise ValueError("EvalConfig.ref is the reference of the Inception FID: drop ref or inception=False")
        if self.classifier is not None:
            self.classifier = str(self.classifier)
            if not Path(self.classifier).is_file():
                raise ValueError(f"EvalConfig.classifier {self.classifier} not found: give a TorchScript file")


@dataclass
class EvalResult:
    """Metrics of one set of samples (``None`` where not applicable)."""

    num_samples: int
    fid_data: float | None = None  # Inception FID against the reference (EvalConfig.ref, else MNIST test set)
    fid_fp: float | None = None  # Inception FID against the FP model's samples (same noise)
    psnr: float | None = None  # mean per-sample PSNR (dB) against the FP samples, capped at 100
    accuracy: float | None = None  # classifier accuracy on the intended labels (conditional)
    clf_fid_data: float | None = None  # classifier-feature FID against the MNIST test set
    clf_fid_fp: float | None = None  # classifier-feature FID against the FP samples
    # "reference": what fid_data compares with; conditional: "class_accuracy" {label: accuracy} and
    # "confusions" [[intended, predicted, count], ...] (the most frequent first)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_scripted_classifier(path: str | os.PathLike, device: torch.device | str | None = None) -> torch.nn.Module:
    """A TorchScript classifier (images -> logits) in eval mode; read by TorchScript's loader, never pickle."""
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript; it is still the one safe, self-contained format.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
            net = torch.jit.load(str(path), map_location=torch.device(device or "cpu"))
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            f"classifier {path} is not a loadable TorchScript file ({e}); save one with "
            "torch.jit.save(torch.jit.script(model), path)"
        ) from e
    return net.eval()


class Evaluator:
    """Holds the feature extractors and reference statistics so several models share them."""

    def __init__(self, cfg: EvalConfig, device: torch.device | str | None = None, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        self.device = torch.device(device or "cpu")
        self.classifier: MnistClassifier | None = load_classifier().to(self.device) if cfg.mnist else None
        self.user_classifier: torch.nn.Module | None = None
        if cfg.classifier is not None:
            self.user_classifier = load_scripted_classifier(cfg.classifier, self.device)
        self.inception: InceptionFeatures | None = None
        self._ref: FeatureStats | None = None
        self._clf_ref: FeatureStats | None = None
        self._fp_stats: tuple | None = None  # (FP images, their version, their Inception statistics)
        if cfg.inception:
            self.inception = load_inception(cfg.inception_path, device=device, bf16=cfg.bf16)

    @property
    def reference_name(self) -> str | None:
        """What ``fid_data`` compares with: ``cfg.ref``, ``"mnist-test-<ref_num>"`` or None."""
        if self.cfg.ref is not None:
            return self.cfg.ref
        return f"mnist-test-{self.cfg.ref_num}" if self.cfg.mnist else None

    def reference(self) -> FeatureStats | None:
        """Inception statistics of the reference (None without Inception or without a reference)."""
        if self._ref is None and self.inception is not None and self.reference_name is not None:
            if self.cfg.ref is not None:
                self._ref = reference_from_path(self.inception, self.cfg.ref, progress=self.progress)
            else:
                self._ref = reference_stats(self.inception, self.cfg.ref_num, progress=self.progress)
        return self._ref

    def fid_to_reference(self, stats: FeatureStats | None) -> float | None:
        """FID of Inception ``stats`` against :meth:`reference`; None if either is missing."""
        ref = self.reference() if stats is not None else None
        return fid_from_features(stats, ref) if ref is not None else None

    def classifier_reference(self) -> FeatureStats:
        if self._clf_ref is None:
            from ..data.mnist import load_mnist

            self._clf_ref = FeatureStats.from_features(self._clf_features(load_mnist("test")[0][: self.cfg.ref_num]))
        return self._clf_ref

    @torch.no_grad()
    def _clf_features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.classifier.features(b.to(self.device)).cpu() for b in images.split(500)])

    @torch.no_grad()
    def _user_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) of the TorchScript classifier, checked on every batch."""
        out = []
        for b in images.split(500):
            try:
                logits = self.user_classifier(b.to(self.device))
            except Exception as e:  # TorchScript raises its own error types on bad inputs
                raise ValueError(f"classifier {self.cfg.classifier} fails on images {tuple(b.shape)}: {e}") from e
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != len(b):
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(
                    f"classifier {self.cfg.classifier} must map {len(b)} images to logits ({len(b)}, K), got {got}"
                )
            out.append(logits.float().cpu())
        return torch.cat(out)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float | None:
        """Top-1 accuracy on ``labels``: the TorchScript classifier if given, else the MNIST one (or None)."""
        pred = self.predictions(images, labels)
        return None if pred is None else float((pred == labels.cpu()).float().mean())

    def predictions(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """Predicted labels (N,) of the classifier that :meth:`accuracy` uses (None without one); the
        intended ``labels`` are checked against the TorchScript classifier's classes."""
        if self.user_classifier is not None:
            logits = self._user_logits(images)
            k = logits.shape[1]
            if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < k:
                raise ValueError(
                    f"labels span {int(labels.min())}..{int(labels.max())} but classifier {self.cfg.classifier} "
                    f"gives {k} classes: pass a classifier of the model's classes"
                )
        elif self.classifier is not None:
            with torch.no_grad():
                logits = torch.cat([self.classifier(b.to(self.device)).cpu() for b in images.split(500)])
        else:
            return None
        return logits.argmax(1)

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
        """Metrics of ``images`` (N, C, H, W) in [-1, 1] ((N, 1, 32, 32) for the MNIST metrics).

        Args:
            images: the samples.
            labels: intended class labels (conditional models) for the accuracy.
            fp_images: FP samples from the same noise (for PSNR and the FID against FP).
            fp_stats: Inception statistics of ``fp_images`` if already computed.
            skip_inception: leave the Inception FIDs to the caller.
        """
        res = EvalResult(num_samples=len(images))
        if self.inception is not None:
            res.extra["reference"] = self.reference_name  # what fid_data compares with
        clf_feats = self._clf_features(images) if self.classifier is not None else None
        if clf_feats is not None:
            res.clf_fid_data = fid_from_features(clf_feats, self.classifier_reference())
        pred = self.predictions(images, labels) if labels is not None else None
        if pred is not None:
            res.accuracy = float((pred == labels.cpu()).float().mean())
            res.extra["class_accuracy"] = {str(c): a for c, a in class_accuracy(pred, labels).items()}
            res.extra["confusions"] = [list(c) for c in confusions(pred, labels)]
        stats = self.inception_stats(images) if not skip_inception else None
        res.fid_data = self.fid_to_reference(stats)
        if fp_images is not None:
            summary = summarize_psnr(psnr(images, fp_images))
            res.psnr = summary.mean_capped
            res.extra["psnr_median"] = summary.median
            if clf_feats is not None:
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
    unets: dict[str, Any],
    model: Any,
    num: int,
    sampler: Any,
    cond: Any = None,
    progress: bool = True,
    state: Any = None,
) -> dict[str, ModelSamples]:
    """Sample every denoiser of ``model`` from the same noise (common random numbers).

    Args:
        unets: ``{name: denoiser}``, e.g. the FP UNet and quantized copies.
        model: the :class:`adpdm.models.loading.DiffusionModel` (schedule, classes, pipeline).
        num: samples per denoiser.
        sampler: the :class:`adpdm.sampling.SamplerConfig`.
        cond: labels or prompts (:class:`adpdm.generate.Conditioning`).
        progress: progress bars.
        state: an ``accelerate`` state: the batches are spread over its processes, and every
            process gets all the samples, in the order of a one-process run.
    """
    import time

    from ..generate import generate

    out = {}
    for name, unet in unets.items():
        start = time.perf_counter()
        show = progress and (state is None or state.is_main_process)
        res = generate(model, unet, num, sampler, cond, progress=show, state=state)
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
            res.fid_data = evaluator.fid_to_reference(fp_stats)
        else:
            res = evaluator.evaluate(s.images, labels, fp_images=fp.images, fp_stats=fp_stats)
        res.extra["sampling_seconds"] = s.seconds
        results[name] = res
    return results
