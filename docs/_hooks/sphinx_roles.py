"""MkDocs hook: the API reference reads the docstrings' Sphinx roles as plain code.

The code's docstrings use reStructuredText roles (``:func:`run```, ``:class:`Model```) and a
paragraph's closing ``::`` before a literal block, which the command line's ``help()`` shows
as they are; the site renders docstrings as Markdown, where they would print as
``:func:run``. On the API pages the role is dropped and its code kept, and ``::`` becomes
``:``.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc|obj|const):(?=<code>)")
_LITERAL = re.compile(r"::</p>")


def on_page_content(html: str, page: Any, **_: Any) -> str:
    if not page.file.src_uri.startswith("api/"):
        return html
    return _LITERAL.sub(":</p>", _ROLE.sub("", html))
