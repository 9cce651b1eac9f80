"""Resolve a model spec given on the command line to a model every command can run.

``embedded:NAME`` is one of the models shipped with adpdm; anything else is a local folder
or a Hugging Face hub id of a diffusers pipeline, loaded with ``from_pretrained``. Three kinds
of model come out, and the commands branch on :attr:`DiffusionModel.kind` only:

* ``unconditional``: a ``UNet2DModel`` (``DDPMPipeline``, ``DDIMPipeline``);
* ``class``: a ``UNet2DModel`` with ``num_class_embeds`` (labels; classifier-free guidance
  needs the label the model was trained on as "no class", ``null_class``);
* ``text``: a ``UNet2DConditionModel`` or ``PixArtTransformer2DModel`` in a text-to-image pipeline
  (prompts; guidance).

The first two run on adpdm's own sampler (common random numbers, see :mod:`adpdm.sampling`);
text-conditioned models run through their own pipeline (:mod:`adpdm.generate`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn

from .unet import TEXT_DENOISERS, is_transformer, prepare_denoiser, unet_of

logger = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
KINDS = ("unconditional", "class", "text")


@dataclass
class DiffusionModel:
    """A full-precision model, ready to sample and to quantize.

    Args:
        spec: what was loaded (``embedded:NAME``, a folder or a hub id).
        unet: the FP denoiser (fp32, eval mode).
        scheduler_config: the diffusers scheduler config the model samples with.
        num_classes: labels ``0 .. num_classes - 1`` of a class-conditional model, else ``None``.
        null_class: the unconditional label of classifier-free guidance (``None``: no guidance).
        pipeline: the diffusers pipeline it came from (``None`` for embedded models); text
            models sample through it (text encoder, VAE), and a latent DiT's samples are decoded by
            its VAE.
    """

    spec: str
    unet: nn.Module
    scheduler_config: dict
    num_classes: int | None = None
    null_class: int | None = None
    pipeline: Any = None

    @property
    def kind(self) -> str:
        """``"unconditional"``, ``"class"`` or ``"text"``."""
        if type(self.unet).__name__ in TEXT_DENOISERS:
            return "text"
        return "class" if self.num_classes is not None else "unconditional"

    @property
    def latent(self) -> bool:
        """Whether the denoiser works on latents that the pipeline's VAE decodes (a latent DiT; text
        pipelines decode through their own call)."""
        return self.kind != "text" and getattr(self.pipeline, "vae", None) is not None

    @property
    def conditional(self) -> bool:
        """Whether samples carry class labels."""
        return self.kind == "class"

    @property
    def default_guidance(self) -> float:
        """The guidance scale commands use when none is given (7.5 text, 2.0 class with a null label)."""
        if self.kind == "text":
            return 7.5
        return 2.0 if self.null_class is not None else 1.0


def is_embedded(spec: str) -> bool:
    """Whether ``spec`` names a model shipped with adpdm."""
    return spec.startswith(EMBEDDED_PREFIX)


def load_model(spec: str, null_class: int | None = None) -> DiffusionModel:
    """Load any model spec: ``embedded:NAME``, a diffusers pipeline folder or a (cached) hub id.

    Args:
        spec: the model.
        null_class: for a class-conditional pipeline, the label trained as "no class" (needed
            for classifier-free guidance). When it is the last label, the classes are the ones
            before it. Embedded models know theirs.

    Example::

        model = load_model("my_ddim_folder")
        out = adpdm.generate.generate(model, model.unet, 16, SamplerConfig(num_steps=50))
    """
    if is_embedded(spec):
        from ..embedded import load_embedded

        m = load_embedded(spec[len(EMBEDDED_PREFIX) :])
        if null_class is not None and null_class != m.null_class:
            raise ValueError(f"--null-class {null_class} does not apply to {spec} (its null class is {m.null_class})")
        return DiffusionModel(spec, m.unet, dict(m.scheduler_config), m.num_classes, m.null_class)
    pipe = load_pipeline(spec)
    unet = prepare_denoiser(unet_of(pipe).float().eval())
    scheduler_config = dict(pipe.scheduler.config)
    if is_transformer(unet) and type(unet).__name__ not in TEXT_DENOISERS:
        num_classes, null = _dit_classes(spec, unet, null_class)
        return DiffusionModel(spec, unet, scheduler_config, num_classes, null, pipeline=pipe.to("cpu"))
    if type(unet).__name__ in TEXT_DENOISERS:
        if null_class is not None:
            raise ValueError(f"--null-class is for class-conditional models; {spec} is text-conditioned")
        if getattr(pipe, "tokenizer", None) is None or getattr(pipe, "text_encoder", None) is None:
            raise ValueError(f"{spec} has a {type(unet).__name__} but no tokenizer / text encoder; adpdm runs "
                             "text-to-image pipelines such as StableDiffusionPipeline")  # fmt: skip
        return DiffusionModel(spec, unet, scheduler_config, pipeline=pipe.to("cpu"))
    num_classes = _class_count(spec, unet, null_class)
    return DiffusionModel(spec, unet, scheduler_config, num_classes, null_class, pipeline=pipe)


def _dit_classes(spec: str, dit: nn.Module, null_class: int | None) -> tuple[int, int | None]:
    """Classes of a DiT and its null label: the extra row of its label table (``num_embeds_ada_norm``
    classes; the table holds one more when it was trained with label dropout)."""
    n = int(dit.config.num_embeds_ada_norm)
    table = dit.transformer_blocks[0].norm1.emb.class_embedder.embedding_table.num_embeddings
    null = n if table > n else None
    if null_class is not None and null_class != null:
        raise ValueError(f"--null-class {null_class} does not apply to {spec}: its null label is "
                         f"{null if null is not None else 'absent (no guidance)'}; drop the flag")  # fmt: skip
    return n, null


def _class_count(spec: str, unet: nn.Module, null_class: int | None) -> int | None:
    """Number of real classes of a ``UNet2DModel``, checking ``null_class`` against its embedding."""
    embeds = unet.config.get("num_class_embeds")
    if unet.config.get("class_embed_type") is not None:
        raise ValueError(f"{spec}: class_embed_type={unet.config['class_embed_type']!r} is not supported; adpdm "
                         "runs UNet2DModel with a plain class embedding (num_class_embeds)")  # fmt: skip
    if embeds is None:
        if null_class is not None:
            raise ValueError(f"--null-class is for class-conditional models; {spec} is unconditional")
        return None
    if null_class is None:
        return int(embeds)
    if not 0 <= null_class < embeds:
        raise ValueError(f"--null-class must be a label of the model, in [0, {embeds}), got {null_class}")
    return int(embeds) - 1 if null_class == embeds - 1 else int(embeds)


def load_pipeline(spec: str, **kwargs: Any) -> Any:
    """A diffusers pipeline from a local folder or a hub id, with a clear error when it cannot load.

    Without network access (or with ``HF_HUB_OFFLINE=1``) only folders and cached hub ids load.
    """
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(spec, **kwargs)
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(
            f"cannot load the pipeline {spec!r}: it is not a diffusers pipeline folder, and as a hub id it "
            f"could not be reached or is not in the local cache (offline?): {err}"
        ) from err
    try:  # an unsupported denoiser (a transformer, a 3-D UNet) is refused before any work
        unet_of(pipe)
    except ValueError as err:
        raise ValueError(f"{spec!r}: {err}") from None
    return pipe
