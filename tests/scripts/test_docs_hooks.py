"""The documentation hook drops Sphinx role prefixes and keeps the names."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "docs_hooks.py"
_SPEC = importlib.util.spec_from_file_location("docs_hooks", _PATH)
docs_hooks = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(docs_hooks)


def test_roles_become_code() -> None:
    html = "<p>a :class:<code>QuantConfig</code> and :func:<code>run_ptq</code>, ratio 3:1, <code>x:y</code></p>"
    assert docs_hooks.strip_roles(html) == (
        "<p>a <code>QuantConfig</code> and <code>run_ptq</code>, ratio 3:1, <code>x:y</code></p>"
    )
