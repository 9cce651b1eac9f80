"""Wall time, peak memory and the machine description written with every measurement."""

from __future__ import annotations

import functools
import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any

import torch


def reset_peak_memory() -> None:
    """Reset the peak-memory counters (Linux RSS high-water mark, CUDA allocator)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> float:
    """Peak resident memory since the last reset (CUDA: peak allocated), in MiB."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """Short git commit of the adpdm source tree, ``-dirty`` when it has uncommitted changes; None outside git."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "adpdm"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def provenance() -> dict[str, Any]:
    """The code a result was made by: package version and source commit (written into every results file)."""
    from .. import __version__

    return {"adpdm_version": __version__, "commit": source_commit()}


def machine_description() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def resolve_device(name: str | None = None, state: Any = None) -> torch.device:
    """``name`` if given, else the process's device under ``accelerate`` (``state``), else cuda if present."""
    if name:
        return torch.device(name)
    if state is not None:
        return state.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_isa() -> dict[str, bool]:
    """Which int8-relevant x86 extensions the CPU reports (Linux ``/proc/cpuinfo``; all False elsewhere)."""
    path = Path("/proc/cpuinfo")
    text = path.read_text() if path.exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {k: k in flags for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")}
