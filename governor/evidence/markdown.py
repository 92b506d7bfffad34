"""Markdown table cells that stay one cell whatever the evidence holds (a multi-line `perl -e`
program, a `|` in a command, `<script>`, `[text](url)`).

GitHub-flavoured markdown ends a table row at a line break and a cell at an unescaped `|`; inline
markup (emphasis, links, code, HTML) would change what a reader sees. So a cell escapes every ASCII
punctuation character markdown gives meaning to with a backslash (CommonMark: any ASCII
punctuation may be backslash-escaped), shows line breaks as a visible `⏎`, drops other control
characters, and is cut to `limit` characters with `…`.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_~\[\]<>|&])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CELL_LIMIT = 300


def cell(text: object, limit: int = CELL_LIMIT) -> str:
    """`text` as the content of one table cell."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = _CONTROL.sub("", s).replace("\t", " ")
    s = _SPECIAL.sub(r"\\\1", s)
    return s.replace("\n", " ⏎ ")


def link(path: str) -> str:
    """A link to a bundle file (paths are ours: letters, digits, `/`, `.`, `-`, `_`)."""
    return f"[{cell(path)}]({path})"


def row(*cells: str) -> str:
    """A table row from cells already escaped."""
    return "| " + " | ".join(cells) + " |"
