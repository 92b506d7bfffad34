"""Redaction of secrets in command lines, URLs and KEY=VALUE text before anything leaves the agent.

Rules are deliberately greedy: a false positive costs a `***` in a log line, a false negative
leaks a credential off the node.
"""

from __future__ import annotations

import re
from typing import Sequence

MASK = "***"

_SECRET_WORD = r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|" \
    r"private[_-]?key|credentials?|auth(?:orization)?|session[_-]?key|client[_-]?secret)"
# --password VALUE / --db-password=VALUE / -token=VALUE
_FLAG = re.compile(rf"^(?P<flag>--?[\w.-]*{_SECRET_WORD}[\w.-]*)(?P<eq>=)(?P<value>.*)$", re.I)
_FLAG_ALONE = re.compile(rf"^--?[\w.-]*{_SECRET_WORD}[\w.-]*$", re.I)
# FOO_PASSWORD=x, PGPASSWORD=x, aws_secret_access_key=x, and `password=x` inside a DSN
_KEY_VALUE = re.compile(rf"(?P<key>\b[\w.-]*{_SECRET_WORD}[\w.-]*)(?P<sep>\s*[=:]\s*)(?!(?:bearer|basic|token)\s)(?P<value>[^\s&;,'\"]+)", re.I)
# scheme://user:pass@host -> scheme://user:***@host
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)
# Authorization: Bearer x / Basic x
_AUTH_HEADER = re.compile(r"(?P<kind>\b(?:bearer|basic|token)\s+)(?P<value>[A-Za-z0-9._~+/=-]{6,})", re.I)
# A truncated URL that never reached its '@' may still hold a password: drop everything after ://
_TRUNCATED_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<rest>[^@\s]*:[^@\s]*)$", re.I)


def redact_text(text: str, truncated: bool = False) -> str:
    """Mask secrets inside one string (an argument, a log message, a URL)."""
    m = _FLAG.match(text)
    if m:
        return f"{m.group('flag')}={MASK}"
    out = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    out = _AUTH_HEADER.sub(lambda m: f"{m.group('kind')}{MASK}", out)
    out = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{MASK}", out)
    if truncated:
        out = _TRUNCATED_URL.sub(lambda m: f"{m.group('scheme')}{MASK}", out)
    return out


def redact_argv(argv: Sequence[str], arg_capacity: int | None = None) -> list[str]:
    """Mask secret values in an argv: `--password X`, `--token=X`, `X_SECRET=...`, URLs, headers.

    `arg_capacity` is the probe's per-argument buffer; an argument that filled it may have been
    cut inside a secret, so it is redacted more strictly.
    """
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        if _FLAG_ALONE.match(arg):
            out.append(arg)
            mask_next = True
            continue
        cut = arg_capacity is not None and len(arg.encode()) >= arg_capacity - 1
        out.append(redact_text(arg, truncated=cut))
    return out

