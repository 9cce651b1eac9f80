"""Quantization configuration: one validated dataclass with named presets and a JSON form."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

_TYPE = "adpdm.QuantConfig"
_VERSION = 1


def _check_range(name: str, value: int | float, lo: int | float, hi: int | float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"QuantConfig.{name} must be in [{lo}, {hi}], got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"QuantConfig.{name} must be one of {choices}, got {value!r}")


@dataclass
class QuantConfig:
    """What to quantize and how.

    Args:
        wbits: weight bit width, 2-8.
        abits: activation bit width, 2-8 (16 allowed).
        softmax_bits: bit width of the attention softmax output (unsigned), default 8, up to 16.
        groups: number G of timestep groups of activation quantization parameters (1 = shared).
        num_steps: number K of sampling steps of the deployment schedule (e.g. DDIM 100).
        partition: "shared" (one step->group table for the whole network) or "per_layer".
        weight_symmetric: symmetric (signed) weight codes instead of asymmetric, default False.
        act_symmetric: symmetric activation codes, default False.
        weight_init: weight range initialisation, "lp" (p-norm search) or "minmax".
        act_init: activation range initialisation, "lp" or "minmax".
        lp_norm: the p of the Lp range search, default 2.4.
        first_last_bits: weight and activation bits of the first and last layer (None: same as
            the others; 8 keeps them at 8 bits).
        quantize_attention: quantize the attention matmul inputs (Q, K, V) and softmax output.
        split_skip: quantize concatenated skip-connection inputs per part (shortcut splitting).
        include: fnmatch patterns of module names to quantize (default: every Conv2d / Linear).
        exclude: fnmatch patterns of module names to leave in full precision.
        reservoir: activation values kept per step per quantizer for range search and statistics.

    Example::

        cfg = QuantConfig.preset("w4a8", groups=4, num_steps=100)
    """

    wbits: int = 8
    abits: int = 8
    softmax_bits: int = 8
    groups: int = 1
    num_steps: int = 100
    partition: str = "shared"
    weight_symmetric: bool = False
    act_symmetric: bool = False
    weight_init: str = "lp"
    act_init: str = "lp"
    lp_norm: float = 2.4
    first_last_bits: int | None = None
    quantize_attention: bool = True
    split_skip: bool = True
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = field(default_factory=tuple)
    reservoir: int = 2048

    def __post_init__(self) -> None:
        self.include, self.exclude = tuple(self.include), tuple(self.exclude)
        _check_range("wbits", self.wbits, 2, 8)
        if self.abits != 16:
            _check_range("abits", self.abits, 2, 8)
        _check_range("softmax_bits", self.softmax_bits, 2, 16)
        _check_range("num_steps", self.num_steps, 1, 100_000)
        _check_range("groups", self.groups, 1, self.num_steps)
        _check_choice("partition", self.partition, ("shared", "per_layer"))
        _check_choice("weight_init", self.weight_init, ("lp", "minmax"))
        _check_choice("act_init", self.act_init, ("lp", "minmax"))
        _check_range("lp_norm", self.lp_norm, 1.0, 10.0)
        if self.first_last_bits is not None:
            _check_range("first_last_bits", self.first_last_bits, 2, 8)
        _check_range("reservoir", self.reservoir, 16, 1 << 20)
        for name in ("include", "exclude"):
            if not all(isinstance(p, str) for p in getattr(self, name)):
                raise ValueError(f"QuantConfig.{name} must be a sequence of strings")

    PRESETS = {
        "w8a8": {"wbits": 8, "abits": 8},
        "w6a6": {"wbits": 6, "abits": 6},
        "w4a8": {"wbits": 4, "abits": 8},
        "w4a16": {"wbits": 4, "abits": 16},
    }

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> QuantConfig:
        """A named preset (``w8a8``, ``w6a6``, ``w4a8``, ``w4a16``) with optional field overrides."""
        key = name.lower()
        if key not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[key], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict tagged with the type and format version."""
        out: dict[str, Any] = {"_type": _TYPE, "_version": _VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantConfig:
        """Inverse of :meth:`to_dict`; rejects other types, newer versions and unknown fields."""
        if data.get("_type") != _TYPE:
            raise ValueError(f"not a QuantConfig: _type is {data.get('_type')!r}, expected {_TYPE!r}")
        if not isinstance(data.get("_version"), int) or data["_version"] > _VERSION:
            raise ValueError(f"QuantConfig version {data.get('_version')!r} is not supported (<= {_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if not k.startswith("_")}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown QuantConfig fields: {unknown}")
        return cls(**fields)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> QuantConfig:
        return cls.from_dict(json.loads(text))
