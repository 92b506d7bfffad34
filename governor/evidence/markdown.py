"""Markdown table cells that stay one cell whatever the evidence holds (a multi-line `perl -e`
program, a `|` in a command, `<script>`, `[text](url)`).

GitHub-flavoured markdown ends a table row at a line break and a cell at an unescaped `|`; inline
markup (emphasis, links, code, HTML) would change what a reader sees. So a cell escapes every ASCII
punctuation character markdown gives meaning to with a backslash (CommonMark: any ASCII
punctuation may be backslash-escaped), shows line breaks as a visible `⏎`, drops other control
characters, and is cut to `limit` characters with `…`.

Secrets are masked before escaping, never after (`cell` runs `redact_text` on the raw text): a rule
run over escaped text reads an escaped mask `\\*\\*\\*` as a value and masks it again, unescaped,
which renders as emphasis (`--password=***`, `DB\\_PASSWORD=***` in a trial's timeline).
`unescape` gives back the text a cell was made from, so the bundle's last pass can check escaped
lines without masking them again (governor/evidence/bundle.py).
"""

from __future__ import annotations

import re

from agent.redaction.redact import redact_text

_SPECIAL = re.compile(r"([\\`*_~\[\]<>|&])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CELL_LIMIT = 300


def cell(text: object, limit: int = CELL_LIMIT) -> str:
    """`text` as the content of one table cell: secrets masked, then markup escaped."""
    s = redact_text(str(text))
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = _CONTROL.sub("", s).replace("\t", " ")
    s = _SPECIAL.sub(r"\\\1", s)
    return s.replace("\n", " ⏎ ")


_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")  # a backslash before ASCII punctuation (CommonMark)


def unescape(line: str) -> str:
    """The text of a markdown line with its backslash escapes removed (what a reader sees)."""
    return _ESCAPED.sub(r"\1", line)


def link(path: str) -> str:
    """A link to a bundle file (paths are ours: letters, digits, `/`, `.`, `-`, `_`)."""
    return f"[{cell(path)}]({path})"


def row(*cells: str) -> str:
    """A table row from cells already escaped."""
    return "| " + " | ".join(cells) + " |"
