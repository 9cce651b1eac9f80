"""Quantization configuration: one validated dataclass with named presets and a JSON form."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .models.unet import FIRST_LAST_LAYERS

_TYPE = "adpdm.QuantConfig"
_VERSION = 1


def _check_range(name: str, value: int | float, lo: int | float, hi: int | float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"QuantConfig.{name} must be in [{lo}, {hi}], got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"QuantConfig.{name} must be one of {choices}, got {value!r}")


def _check_bits(name: str, value: Any, allow_16: bool) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and (2 <= value <= 8 or (allow_16 and value == 16))
    if not ok:
        raise ValueError(f"QuantConfig.{name} must be an int in [2, 8]{' or 16' if allow_16 else ''}, got {value!r}")


LayerBits = tuple[tuple[str, int, int], ...]

# The fields a method's recipe decides (adpdm.methods); None in a QuantConfig means "not set".
# Values used where no method decides them (adpdm.quantize_model on its own):
RECIPE_DEFAULTS: dict[str, Any] = {
    "groups": 1,
    "partition": "shared",
    "weight_init": "lp",
    "act_init": "lp",
    "lp_norm": 2.4,
    "split_skip": True,
}


def _normalise_layer_bits(value: Any) -> LayerBits:
    """``layer_bits`` as a tuple of ``(pattern, wbits, abits)`` tuples (JSON gives lists), validated."""
    example = "e.g. (('mid_block.*', 8, 8),)"
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"QuantConfig.layer_bits must be a sequence of (pattern, wbits, abits), {example}; "
                         f"got {value!r} (parse 'PATTERN=W8A8,...' with adpdm.config.parse_layer_bits)")  # fmt: skip
    entries = []
    for i, entry in enumerate(value):
        if isinstance(entry, (str, bytes)) or not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise ValueError(f"QuantConfig.layer_bits[{i}] must be (pattern, wbits, abits), {example}; got {entry!r}")
        pattern, wbits, abits = entry
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"QuantConfig.layer_bits[{i}] pattern must be a non-empty string, got {pattern!r}")
        _check_bits(f"layer_bits[{i}] ({pattern!r}) wbits", wbits, allow_16=False)
        _check_bits(f"layer_bits[{i}] ({pattern!r}) abits", abits, allow_16=True)
        entries.append((pattern, wbits, abits))
    patterns = [e[0] for e in entries]
    repeated = sorted({p for p in patterns if patterns.count(p) > 1})
    if repeated:
        raise ValueError(f"QuantConfig.layer_bits repeats the pattern(s) {repeated}: only the first could ever match")
    return tuple(entries)


_BITS_SPEC = re.compile(r"[wW](\d+)[aA](\d+)")


def parse_layer_bits(text: str) -> LayerBits:
    """``"PATTERN=W8A8,PATTERN2=W6A8"`` -> ``(("PATTERN", 8, 8), ("PATTERN2", 6, 8))`` (the CLI syntax).

    Example::

        cfg = QuantConfig.preset("w4a8", layer_bits=parse_layer_bits("mid_block.*=W8A8"))
    """
    entries = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        pattern, sep, spec = item.rpartition("=")
        match = _BITS_SPEC.fullmatch(spec.strip())
        if not sep or not pattern.strip() or match is None:
            raise ValueError(f"bad layer bits {item!r}: expected PATTERN=W<bits>A<bits>, e.g. 'mid_block.*=W8A8'")
        entries.append((pattern.strip(), int(match[1]), int(match[2])))
    return _normalise_layer_bits(entries)


def selects_attention(pattern: str, name: str) -> bool:
    """Whether a ``layer_bits`` pattern selects the Attention module ``name``: it matches the module
    itself or all of its children (``name`` or ``name + "."``; ``N.*`` does, ``N.to_q`` does not)."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name + ".", pattern)


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


@dataclass
class QuantConfig:
    """What to quantize and how.

    Args:
        wbits: weight bit width, 2-8.
        abits: activation bit width, 2-8 (16 allowed).
        softmax_bits: bit width of the attention softmax output (unsigned), default 8, up to 16.
        groups: number G of timestep groups of activation quantization parameters (1 = shared).
            This field and ``partition``, ``weight_init``, ``act_init``, ``lp_norm``, ``split_skip``
            are a method's recipe: ``None`` (the default) lets the method decide; a value that
            conflicts with the method's recipe is an error (:meth:`adpdm.methods.MethodSpec.quant_config`).
        num_steps: number K of sampling steps of the deployment schedule (e.g. DDIM 100).
        partition: "shared" (one step->group table for the whole network) or "per_layer".
        weight_symmetric: symmetric (signed) weight codes instead of asymmetric, default False.
        weight_group_size: input channels per weight scale (grouped weights, e.g. 64); ``None``
            (default) gives one scale per output channel. A group is B consecutive input channels
            of one output channel at one kernel position (ONNX's blocked layout); presets
            ``w4g64a8`` and the like.
        act_symmetric: symmetric activation codes, default False.
        weight_init: weight range initialisation, "lp" (p-norm search) or "minmax".
        act_init: activation range initialisation, "lp" or "minmax".
        lp_norm: the p of the Lp range search, default 2.4.
        first_last_bits: weight bits of the first and last layer (``conv_in``, ``conv_out``), whose
            activation bits become ``max(first_last_bits, abits)``. Default 8: the field's protocol
            (BRECQ, Q-Diffusion and their descendants keep these two layers at 8 bits; the network
            output is never quantized). ``None`` quantizes them like every other layer (the
            "strict" setting, presets ``*-strict``).
        layer_bits: ``(pattern, wbits, abits)`` entries: layers whose module name matches the
            fnmatch ``pattern`` get these bit widths (abits 16: input not quantized). The first
            matching entry wins, over ``first_last_bits`` and ``wbits`` / ``abits``; an entry
            that matches no quantized layer is an error in :func:`adpdm.quantize_model`. Attention
            Q, K, V quantizers follow the rule of :meth:`attention_abits`.
        quantize_attention: quantize the attention matmul inputs (Q, K, V) and softmax output.
        smoothing: divide each quantized layer's input by per-channel factors and multiply its weight
            by them (SmoothQuant), with a per-layer strength chosen on the calibration rows
            (:mod:`adpdm.calib.smooth`; none where it does not lower the layer's error there).
            Applied by :func:`adpdm.ptq.run_ptq` before the ranges are observed. Default False.
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
    groups: int | None = None
    num_steps: int = 100
    partition: str | None = None
    weight_symmetric: bool = False
    weight_group_size: int | None = None
    act_symmetric: bool = False
    weight_init: str | None = None
    act_init: str | None = None
    lp_norm: float | None = None
    first_last_bits: int | None = 8
    quantize_attention: bool = True
    smoothing: bool = False
    split_skip: bool | None = None
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = field(default_factory=tuple)
    reservoir: int = 2048
    layer_bits: LayerBits = ()

    def __post_init__(self) -> None:
        self.include, self.exclude = tuple(self.include), tuple(self.exclude)
        _check_range("wbits", self.wbits, 2, 8)
        if self.abits != 16:
            _check_range("abits", self.abits, 2, 8)
        _check_range("softmax_bits", self.softmax_bits, 2, 16)
        _check_range("num_steps", self.num_steps, 1, 100_000)
        if self.groups is not None:
            _check_range("groups", self.groups, 1, self.num_steps)
        if self.weight_group_size is not None:
            _check_range("weight_group_size", self.weight_group_size, 4, 1 << 16)
            if not isinstance(self.weight_group_size, int):
                raise ValueError(f"QuantConfig.weight_group_size must be an int, got {self.weight_group_size!r}")
        _check_choice("partition", self.partition, (None, "shared", "per_layer"))
        _check_choice("weight_init", self.weight_init, (None, "lp", "minmax"))
        _check_choice("act_init", self.act_init, (None, "lp", "minmax"))
        if self.lp_norm is not None:
            _check_range("lp_norm", self.lp_norm, 1.0, 10.0)
        _check_choice("split_skip", self.split_skip, (None, True, False))
        _check_choice("smoothing", self.smoothing, (True, False))
        if self.first_last_bits is not None:
            _check_range("first_last_bits", self.first_last_bits, 2, 8)
        _check_range("reservoir", self.reservoir, 16, 1 << 20)
        for name in ("include", "exclude"):
            if not all(isinstance(p, str) for p in getattr(self, name)):
                raise ValueError(f"QuantConfig.{name} must be a sequence of strings")
        self.layer_bits = _normalise_layer_bits(self.layer_bits)

    def bits_for(self, name: str) -> tuple[int, int]:
        """``(wbits, abits)`` of the Conv2d / Linear layer ``name`` (abits 16: input not quantized).

        The first ``layer_bits`` pattern that matches ``name``; else ``first_last_bits`` for
        ``conv_in`` / ``conv_out`` (activations never below ``abits``); else ``wbits`` / ``abits``.
        """
        for pattern, wbits, abits in self.layer_bits:
            if fnmatch.fnmatchcase(name, pattern):
                return wbits, abits
        if self.first_last_bits is not None and name in FIRST_LAST_LAYERS:
            abits = max(self.first_last_bits, self.abits) if self.abits < 16 else self.abits
            return self.first_last_bits, abits
        return self.wbits, self.abits

    def attention_abits(self, name: str) -> int:
        """Activation bits of the Q, K and V quantizers of the Attention module ``name`` (16: none).

        The first ``layer_bits`` pattern that matches the module itself or all of its children,
        i.e. ``name`` or ``name + "."``: ``N``, ``N*``, ``N.*`` and ``mid_block.*`` select the
        attention ``N``, while ``N.to_q`` sets that projection layer only. Else ``abits``. The
        softmax output keeps ``softmax_bits``; at 16 bits the attention is not quantized at all,
        exactly as a global ``abits`` of 16 leaves every attention in full precision.
        """
        for pattern, _, abits in self.layer_bits:
            if selects_attention(pattern, name):
                return abits
        return self.abits

    @property
    def protocol(self) -> str:
        """The layer protocol in words, for tables and reports."""
        if self.first_last_bits is None:
            return "strict: first and last layer quantized like the others"
        return (
            f"first and last layer W{self.first_last_bits}A{max(self.first_last_bits, self.abits)}, output unquantized"
        )

    def is_resolved(self) -> bool:
        """Whether every recipe field (see :data:`RECIPE_DEFAULTS`) has a value."""
        return all(getattr(self, name) is not None for name in RECIPE_DEFAULTS)

    def resolved(self) -> QuantConfig:
        """A copy whose unset recipe fields take the library defaults (:data:`RECIPE_DEFAULTS`).

        A method (:mod:`adpdm.methods`) sets them from its recipe instead; :func:`adpdm.quantize_model`
        resolves what is still unset this way."""
        unset = {name: value for name, value in RECIPE_DEFAULTS.items() if getattr(self, name) is None}
        return dataclasses.replace(self, **unset)

    PRESETS = {
        "w8a8": {"wbits": 8, "abits": 8},
        "w8a6": {"wbits": 8, "abits": 6},
        "w6a6": {"wbits": 6, "abits": 6},
        "w4a8": {"wbits": 4, "abits": 8},
        "w4a6": {"wbits": 4, "abits": 6},
        "w4a16": {"wbits": 4, "abits": 16},
        # grouped weight scales: one scale per 32 / 64 / 128 input channels (weight_group_size)
        "w4g32a8": {"wbits": 4, "abits": 8, "weight_group_size": 32},
        "w4g64a8": {"wbits": 4, "abits": 8, "weight_group_size": 64},
        "w4g128a8": {"wbits": 4, "abits": 8, "weight_group_size": 128},
        "w4g64a6": {"wbits": 4, "abits": 6, "weight_group_size": 64},
    }
    STRICT_SUFFIX = "-strict"

    @classmethod
    def preset_names(cls) -> list[str]:
        """Every preset name: the bit widths, and each with ``-strict`` (first and last layer too)."""
        return sorted(cls.PRESETS) + sorted(p + cls.STRICT_SUFFIX for p in cls.PRESETS)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> QuantConfig:
        """A named preset (``w8a8``, ``w8a6``, ``w6a6``, ``w4a8``, ``w4a6``, ``w4a16``; grouped weight
        scales ``w4g32a8``, ``w4g64a8``, ``w4g128a8``, ``w4g64a6``) with optional field overrides.
        The first and last layer stay at 8 bits (the field's protocol); the
        ``-strict`` variants (``w4a8-strict``) quantize them to the preset's bits too."""
        key = name.lower()
        strict = key.endswith(cls.STRICT_SUFFIX)
        base = key.removesuffix(cls.STRICT_SUFFIX)
        if base not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {cls.preset_names()}")
        fields = {**cls.PRESETS[base], **({"first_last_bits": None} if strict else {})}
        return cls(**{**fields, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict tagged with the type and format version."""
        out: dict[str, Any] = {"_type": _TYPE, "_version": _VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = _jsonable(value)
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
