"""The lifecycle of a quantized model, as an explicit state."""

from __future__ import annotations

from enum import Enum


class QuantState(str, Enum):
    """Where a quantized model is in its lifecycle.

    FP             quantizers are wrapped in but inactive: the model computes in full precision.
    CALIBRATING    observers record activation statistics per sampling step; outputs stay FP.
    CALIBRATED     ranges initialised; the model simulates quantization (nearest rounding,
                   hard step->group table).
    RECONSTRUCTING learnable rounding, group scales and group logits are being optimised.
    FROZEN         integer weights, static per-group activation parameters, hard table.
    """

    FP = "fp"
    CALIBRATING = "calibrating"
    CALIBRATED = "calibrated"
    RECONSTRUCTING = "reconstructing"
    FROZEN = "frozen"

    @property
    def simulates_quantization(self) -> bool:
        return self in (QuantState.CALIBRATED, QuantState.RECONSTRUCTING, QuantState.FROZEN)
