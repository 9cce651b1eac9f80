"""The method registry: ADP-DM, its peers and its ablations as named recipes (method.md section 6).

| name          | timesteps | weights                     | activations                              |
|---------------|-----------|-----------------------------|------------------------------------------|
| rtn           | uniform   | per-channel min-max, nearest| per-tensor min-max, shared over steps    |
| ptq4dm        | normal    | per-channel MSE search      | per-tensor MSE search, shared            |
| qdiffusion    | uniform   | learned rounding + blocks   | per-tensor LSQ, shared; shortcut split   |
| adpdm         | srm       | learned rounding + blocks   | G timestep groups, differentiable search |

Learned rounding and block reconstruction are :mod:`adpdm.recon.reconstruct` with
:class:`~adpdm.recon.reconstruct.ReconConfig` (SignRound by default), the same for both.

Ablations: ``adpdm-g1`` (one group), ``adpdm-uniform`` (uniform timesteps), ``adpdm-perlayer``
(per-layer partition), ``adpdm-perstep`` (one quantizer per step, G = K, no search).

A method is a recipe: it fixes the :class:`~adpdm.config.QuantConfig` fields it is defined by
(range initialisation, p of the range search, shortcut splitting, partition, and the number of
groups where the method has one). A config that sets one of them to another value is refused
with an error that says which method has it; nothing is replaced silently. The layer protocol
(``first_last_bits``, ``layer_bits``) and the bit widths are the user's, alike for every method.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .calib.timesteps import STRATEGIES
from .config import QuantConfig

DEFAULT_GROUPS = 4
PER_STEP = -1  # MethodSpec.groups: one group per sampling step (G = K)
RANGE_DATA = ("selected", "all")


class RecipeConflict(ValueError):
    """A config sets a field that the method fixes to another value.

    Attributes: ``method``, ``field`` (the QuantConfig field), ``fixed`` (the method's value),
    ``given`` (the config's) and ``allowed`` (the registered methods that allow ``given``)."""

    def __init__(self, method: str, field: str, fixed: Any, given: Any, allowed: list[str], remedy: str = "") -> None:
        self.method, self.field, self.fixed, self.given, self.allowed = method, field, fixed, given, allowed
        hint = f"methods that allow it: {', '.join(allowed)}" if allowed else "no registered method uses it"
        remedy = remedy or f"leave QuantConfig.{field} unset (None)"
        super().__init__(
            f"method {method!r} fixes QuantConfig.{field} = {fixed!r}, but the config sets {given!r}: "
            f"{remedy} or choose another method ({hint})"
        )


@dataclass(frozen=True)
class MethodSpec:
    """How one method calibrates.

    Args:
        name: registry key.
        timesteps: calibration-step strategy ("uniform", "normal", "random", "srm").
        weight_init: weight range initialisation ("minmax" or "lp").
        act_init: activation range initialisation ("minmax" or "lp").
        lp_norm: p of the range search (2 = MSE).
        reconstruct: run block reconstruction (learned rounding + learned activation scales).
        groups: fixed number of timestep groups (1 for shared-over-steps methods), ``None`` for the
            user's choice (``QuantConfig.groups``, default :data:`DEFAULT_GROUPS`), ``PER_STEP`` (-1)
            for one group per sampling step.
        search: differentiable step->group search during reconstruction.
        partition: "shared" or "per_layer".
        split_skip: shortcut splitting of concatenated skip inputs.
        ranges_from: which calibration rows initialise the activation ranges: "selected" (the
            calibration steps, as the peers do) or "all" (every step of every recorded trajectory:
            each timestep group starts from all the steps it serves, method.md section 2).
    """

    name: str
    timesteps: str
    weight_init: str
    act_init: str
    lp_norm: float
    reconstruct: bool
    groups: int | None
    search: bool
    partition: str = "shared"
    split_skip: bool = True
    ranges_from: str = "selected"

    def __post_init__(self) -> None:
        if self.timesteps not in STRATEGIES:
            raise ValueError(f"MethodSpec.timesteps must be one of {STRATEGIES}, got {self.timesteps!r}")
        if self.ranges_from not in RANGE_DATA:
            raise ValueError(f"MethodSpec.ranges_from must be one of {RANGE_DATA}, got {self.ranges_from!r}")
        if self.groups is not None and self.groups != PER_STEP and self.groups < 1:
            raise ValueError(f"MethodSpec.groups must be None, -1 or >= 1, got {self.groups}")
        QuantConfig(weight_init=self.weight_init, act_init=self.act_init, lp_norm=self.lp_norm,
                    partition=self.partition)  # fmt: skip  # validates the values

    @property
    def takes_groups(self) -> bool:
        """Whether the user chooses G (``QuantConfig.groups``) for this method."""
        return self.groups is None

    def fixed(self, num_steps: int) -> dict[str, Any]:
        """The QuantConfig fields this recipe fixes, with their values."""
        out: dict[str, Any] = {
            "weight_init": self.weight_init, "act_init": self.act_init, "lp_norm": self.lp_norm,
            "split_skip": self.split_skip, "partition": self.partition,
        }  # fmt: skip
        if self.groups is not None:
            out["groups"] = num_steps if self.groups == PER_STEP else self.groups
        return out

    def quant_config(self, base: QuantConfig) -> QuantConfig:
        """``base`` completed with this recipe; a field ``base`` sets to another value is a
        :class:`RecipeConflict` (a ``ValueError``)."""
        fixed = self.fixed(base.num_steps)
        for name, value in fixed.items():
            mine = getattr(base, name)
            if mine is not None and mine != value:
                others = sorted(m.name for m in METHODS.values() if _allows(m, name, mine, base.num_steps))
                raise RecipeConflict(self.name, name, value, mine, others)
        groups = base.groups if base.groups is not None else DEFAULT_GROUPS
        return dataclasses.replace(base, **{"groups": groups, **fixed})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodSpec:
        """Inverse of :meth:`to_dict` (a report's ``method_spec``); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown MethodSpec fields: {unknown}")
        return cls(**data)


def _allows(method: MethodSpec, name: str, value: Any, num_steps: int) -> bool:
    fixed = method.fixed(num_steps)
    return fixed[name] == value if name in fixed else True


METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        MethodSpec("rtn", "uniform", "minmax", "minmax", 2.0, False, 1, False, split_skip=False),
        MethodSpec("ptq4dm", "normal", "lp", "lp", 2.0, False, 1, False, split_skip=False),
        MethodSpec("qdiffusion", "uniform", "lp", "lp", 2.4, True, 1, False),
        MethodSpec("adpdm", "srm", "lp", "lp", 2.4, True, None, True, ranges_from="all"),
        MethodSpec("adpdm-g1", "srm", "lp", "lp", 2.4, True, 1, False),
        MethodSpec("adpdm-uniform", "uniform", "lp", "lp", 2.4, True, None, True, ranges_from="all"),
        MethodSpec("adpdm-perlayer", "srm", "lp", "lp", 2.4, True, None, True, "per_layer", ranges_from="all"),
        MethodSpec("adpdm-perstep", "srm", "lp", "lp", 2.4, True, PER_STEP, False, ranges_from="all"),
    )
}


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; a ``ValueError`` lists the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]
