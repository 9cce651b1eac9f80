"""The method registry: ADP-DM, its peers and its ablations in one framework (method.md section 6).

| name          | timesteps | weights                     | activations                              |
|---------------|-----------|-----------------------------|------------------------------------------|
| rtn           | uniform   | per-channel min-max, nearest| per-tensor min-max, shared over steps    |
| ptq4dm        | normal    | per-channel MSE search      | per-tensor MSE search, shared            |
| qdiffusion    | uniform   | AdaRound + block recon      | per-tensor LSQ, shared; shortcut split   |
| adpdm         | srm       | AdaRound + block recon      | G timestep groups, differentiable search |

Ablations: ``adpdm-g1`` (one group), ``adpdm-uniform`` (uniform timesteps), ``adpdm-perlayer``
(per-layer partition), ``adpdm-perstep`` (one quantizer per step, G = K, no search).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import QuantConfig


@dataclass(frozen=True)
class MethodSpec:
    """How one method calibrates.

    Args:
        name: registry key.
        timesteps: calibration-step strategy ("uniform", "normal", "random", "srm").
        weight_init / act_init: range initialisation ("minmax" or "lp").
        lp_norm: p of the range search (2 = MSE).
        reconstruct: run block reconstruction (AdaRound + learned activation scales).
        groups: fixed number of timestep groups (1 for shared-over-steps methods), ``None`` to take
            the user's choice, ``-1`` for one group per sampling step.
        search: differentiable step->group search.
        partition: "shared" or "per_layer".
        split_skip: shortcut splitting of concatenated skip inputs.
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

    def quant_config(self, base: QuantConfig, groups: int | None = None) -> QuantConfig:
        """``base`` adjusted to this method (bit widths and steps are kept)."""
        if self.groups == -1:
            g = base.num_steps
        elif self.groups is not None:
            g = self.groups
        else:
            g = groups if groups is not None else base.groups
        return dataclasses.replace(
            base, groups=g, partition=self.partition, weight_init=self.weight_init, act_init=self.act_init,
            lp_norm=self.lp_norm, split_skip=self.split_skip,
        )  # fmt: skip


DEFAULT_GROUPS = 4

METHODS: dict[str, MethodSpec] = {
    "rtn": MethodSpec("rtn", "uniform", "minmax", "minmax", 2.0, False, 1, False, split_skip=False),
    "ptq4dm": MethodSpec("ptq4dm", "normal", "lp", "lp", 2.0, False, 1, False, split_skip=False),
    "qdiffusion": MethodSpec("qdiffusion", "uniform", "lp", "lp", 2.4, True, 1, False),
    "adpdm": MethodSpec("adpdm", "srm", "lp", "lp", 2.4, True, None, True),
    "adpdm-g1": MethodSpec("adpdm-g1", "srm", "lp", "lp", 2.4, True, 1, False),
    "adpdm-uniform": MethodSpec("adpdm-uniform", "uniform", "lp", "lp", 2.4, True, None, True),
    "adpdm-perlayer": MethodSpec("adpdm-perlayer", "srm", "lp", "lp", 2.4, True, None, True, "per_layer"),
    "adpdm-perstep": MethodSpec("adpdm-perstep", "srm", "lp", "lp", 2.4, True, -1, False),
}


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; a ``ValueError`` lists the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]
