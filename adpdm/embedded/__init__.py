"""The project's embedded default models: small MNIST DDPMs trained by the project.

``mnist`` and ``mnist-cond`` are UNets (unconditional, class-conditional); ``mnist-dit`` is a
class-conditional diffusion transformer (diffusers' ``DiTTransformer2DModel``, patches of 4 pixels).

Their weights ship inside the package, under ``adpdm/embedded/assets/<name>/``, so the
quantization pipeline runs without any download::

    model = load_embedded("mnist-cond")
    eps = model.unet(x, t, class_labels=labels).sample
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from diffusers import DDPMScheduler, DiTTransformer2DModel, SchedulerMixin, UNet2DModel
from torch import nn

logger = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
PREFIX = "embedded:"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
# name -> (num_classes, null_class); the null class is the classifier-free-guidance label.
_MODELS: dict[str, tuple[int | None, int | None]] = {
    "mnist": (None, None),
    "mnist-cond": (10, 10),
    "mnist-dit": (10, 10),
}
_CLASSES = {"UNet2DModel": UNet2DModel, "DiTTransformer2DModel": DiTTransformer2DModel}


@dataclass
class EmbeddedModel:
    """An embedded DDPM: its denoiser (a UNet or a DiT; eval mode, fp32) and its training noise schedule."""

    name: str
    unet: nn.Module
    scheduler_config: dict
    num_classes: int | None  # 10 for a class-conditional model, else None
    null_class: int | None  # label of the unconditional branch for classifier-free guidance

    def scheduler(self, cls: type[SchedulerMixin] = DDPMScheduler) -> SchedulerMixin:
        """A fresh scheduler of class ``cls`` (e.g. ``DDIMScheduler``) built from the training schedule."""
        return cls.from_config(self.scheduler_config)


def available_embedded() -> list[str]:
    """Names accepted by :func:`load_embedded` (also with the ``"embedded:"`` prefix)."""
    return sorted(_MODELS)


def embedded_dir(name: str) -> Path:
    """Folder holding the files of embedded model ``name``."""
    return ASSETS_DIR / _canonical(name)


def _canonical(name: str) -> str:
    """``"embedded:mnist"`` -> ``"mnist"``; raises ValueError for unknown names."""
    short = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if short not in _MODELS:
        raise ValueError(f"unknown embedded model {name!r}; available: {available_embedded()}")
    return short


def load_embedded(name: str) -> EmbeddedModel:
    """Load an embedded model by name.

    Args:
        name: ``"mnist"`` (unconditional), ``"mnist-cond"`` or ``"mnist-dit"`` (class-conditional,
            null label 10 for classifier-free guidance), optionally prefixed with ``"embedded:"``.

    Example::

        model = load_embedded("embedded:mnist")
        ddim = model.scheduler(DDIMScheduler)
    """
    short = _canonical(name)
    folder = ASSETS_DIR / short
    if not (folder / WEIGHTS_NAME).is_file() or not (folder / "scheduler_config.json").is_file():
        raise FileNotFoundError(
            f"weights of embedded model {short!r} are missing in {folder}; produce them with "
            f"`python scripts/train_embedded.py --name {short} --out adpdm/embedded/assets/{short}`"
        )
    class_name = json.loads((folder / "config.json").read_text()).get("_class_name", "UNet2DModel")
    if class_name not in _CLASSES:
        raise ValueError(f"embedded model {short!r} has an unknown denoiser class {class_name!r}")
    unet = _CLASSES[class_name].from_pretrained(folder, low_cpu_mem_usage=False).float().eval()
    scheduler_config = json.loads((folder / "scheduler_config.json").read_text())
    num_classes, null_class = _MODELS[short]
    logger.debug("loaded embedded model %s from %s", short, folder)
    return EmbeddedModel(short, unet, scheduler_config, num_classes, null_class)
