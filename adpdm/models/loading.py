"""Resolve a model spec given on the command line (``embedded:NAME``) to a UNet and its schedule."""

from __future__ import annotations

from typing import Any

EMBEDDED_PREFIX = "embedded:"


def load_model(spec: str) -> Any:
    """``embedded:NAME`` -> :class:`adpdm.embedded.EmbeddedModel` (unet, scheduler config, classes)."""
    if not spec.startswith(EMBEDDED_PREFIX):
        raise ValueError(f"only embedded:NAME models are supported by this command for now, got {spec!r}")
    from ..embedded import load_embedded

    return load_embedded(spec[len(EMBEDDED_PREFIX) :])
