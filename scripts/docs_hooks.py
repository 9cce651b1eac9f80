"""MkDocs hooks of the documentation site (``hooks:`` in ``mkdocs.yml``).

The docstrings name other objects with Sphinx roles (``:class:`QuantConfig```); mkdocstrings' Google
style renders the role's prefix as text, so the API reference read ``:class:QuantConfig``. The hook
drops the prefix and keeps the name in code style.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):(?=<code>)")


def strip_roles(html: str) -> str:
    """``:class:<code>X</code>`` -> ``<code>X</code>``."""
    return _ROLE.sub("", html)


def on_page_content(html: str, **kwargs: Any) -> str:
    """MkDocs event: the page's HTML after Markdown rendering (the API reference included)."""
    return strip_roles(html)
