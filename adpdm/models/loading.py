"""Resolve a model spec given on the command line to a model.

``embedded:NAME`` is one of the models shipped with adpdm; anything else is a local folder
or a Hugging Face hub id of a diffusers pipeline, loaded with ``from_pretrained``.
"""

from __future__ import annotations

from typing import Any

EMBEDDED_PREFIX = "embedded:"


def is_embedded(spec: str) -> bool:
    """Whether ``spec`` names a model shipped with adpdm."""
    return spec.startswith(EMBEDDED_PREFIX)


def load_model(spec: str) -> Any:
    """``embedded:NAME`` -> :class:`adpdm.embedded.EmbeddedModel` (unet, scheduler config, classes)."""
    if not is_embedded(spec):
        raise ValueError(f"this command takes embedded:NAME models for now, got {spec!r}")
    from ..embedded import load_embedded

    return load_embedded(spec[len(EMBEDDED_PREFIX) :])


def load_pipeline(spec: str, **kwargs: Any) -> Any:
    """A diffusers pipeline from a local folder or a hub id, with a clear error when it cannot load.

    Without network access (or with ``HF_HUB_OFFLINE=1``) only folders and cached hub ids load.
    """
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(spec, **kwargs)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"cannot load the pipeline {spec!r}: it is not a diffusers pipeline folder, and as a hub id it "
            f"could not be reached or is not in the local cache (offline?): {err}"
        ) from err
    if getattr(pipe, "unet", None) is None:
        raise ValueError(f"{spec!r} loads as {type(pipe).__name__}, which has no UNet to quantize")
    return pipe
