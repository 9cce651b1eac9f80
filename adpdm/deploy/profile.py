"""Per-operator time from ONNX Runtime's profiling JSON (``SessionOptions.enable_profiling``)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass
class OpTime:
    """Total kernel time of one operator type over a profiled run.

    Args:
        op: operator type as executed (after ORT's fusions, e.g. ``QLinearConv``).
        calls: kernel invocations.
        micros: total microseconds.
        share: fraction of all kernel time.
    """

    op: str
    calls: int
    micros: int
    share: float


def op_profile(trace: str | Path) -> list[OpTime]:
    """Aggregate the node events of an ORT profile trace per operator type, slowest first."""
    events = json.loads(Path(trace).read_text())
    micros: dict[str, int] = defaultdict(int)
    calls: dict[str, int] = defaultdict(int)
    for ev in events:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        op = ev.get("args", {}).get("op_name", "?")
        micros[op] += int(ev.get("dur", 0))
        calls[op] += 1
    total = max(1, sum(micros.values()))
    rows = [OpTime(op, calls[op], us, us / total) for op, us in micros.items()]
    return sorted(rows, key=lambda r: -r.micros)


def format_profile(rows: list[OpTime], top: int = 12) -> str:
    """A markdown table of the ``top`` operators."""
    lines = ["| op | calls | ms | share |", "|---|---|---|---|"]
    lines += [f"| {r.op} | {r.calls} | {r.micros / 1000:.2f} | {100 * r.share:.1f}% |" for r in rows[:top]]
    return "\n".join(lines)
