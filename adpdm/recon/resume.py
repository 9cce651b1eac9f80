"""Resume checkpoints of a reconstruction: the model's state after every finished unit.

``out_dir/.resume`` holds ``state.safetensors`` (every parameter and buffer) and ``progress.json``
(the next unit, the losses so far and a fingerprint of the settings). A run with other settings
is refused; a finished run removes both files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

logger = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-able settings (what must match for a resume)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ResumeCheckpoints:
    """Per-unit checkpoints of a reconstruction in progress, in ``folder``."""

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.folder, self.fingerprint = Path(folder), fingerprint

    def load(self, model: nn.Module) -> tuple[int, list[dict]]:
        """Restore ``model`` and return ``(next_unit, losses)``; ``(0, [])`` when there is nothing."""
        meta_path = self.folder / "progress.json"
        if not meta_path.is_file():
            logger.info("nothing to resume in %s: starting from the first unit", self.folder)
            return 0, []
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") != self.fingerprint:
            raise ValueError(f"{self.folder} holds a run with other settings; remove it or drop --resume")
        model.load_state_dict(load_file(self.folder / "state.safetensors"), strict=True)
        logger.info("resuming after unit %d", meta["next_unit"])
        return int(meta["next_unit"]), meta["losses"]

    def save(self, model: nn.Module, next_unit: int, losses: list[dict]) -> None:
        """Write the state after a finished unit, atomically (a crash leaves the previous one)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "state.tmp"
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, tmp)
        tmp.replace(self.folder / "state.safetensors")
        meta = {"fingerprint": self.fingerprint, "next_unit": next_unit, "losses": losses}
        (self.folder / "progress.tmp").write_text(json.dumps(meta))
        (self.folder / "progress.tmp").replace(self.folder / "progress.json")

    def clear(self) -> None:
        for name in ("state.safetensors", "progress.json"):
            (self.folder / name).unlink(missing_ok=True)
