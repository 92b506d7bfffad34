"""Resolve the links in a markdown runbook to files or dashboards in this repository.

A link resolves when it is
- a relative path (``../dashboards/json/x.json``, ``BcgovFoo.md#triage``) to an existing file,
- a URL into this repository (``common.RUNBOOK_BASE_URL``'s repo, any path) naming an existing file,
- a Grafana dashboard URL ``/d/<uid>`` (with or without a host) whose uid a built dashboard has.
Other http(s) URLs are outside the repository and are not checked (the machines here are offline).
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Iterable

from dashboards import common

_MD_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_GRAFANA = re.compile(r"(?:^|https?://[^/]+)/d/([\w-]+)")
_REPO_BLOB = common.RUNBOOK_BASE_URL.rsplit("/runbooks", 1)[0] + "/"


def links(text: str) -> list[str]:
    """Every markdown link target in `text` (inline links; code spans are stripped first)."""
    no_code = re.sub(r"```.*?```", "", text, flags=re.S)
    no_code = re.sub(r"`[^`]*`", "", no_code)
    return _MD_LINK.findall(no_code)


def unresolved(md_file: pathlib.Path, root: pathlib.Path, dashboard_uids: Iterable[str]) -> list[str]:
    """The link targets in `md_file` that name no file or dashboard of the repository at `root`."""
    uids = set(dashboard_uids)
    bad = []
    for target in links(md_file.read_text(encoding="utf-8")):
        if target.startswith("#") or target.startswith("mailto:"):
            continue
        m = _GRAFANA.match(target)
        if m:
            if m.group(1) not in uids:
                bad.append(target)
            continue
        if target.startswith(_REPO_BLOB):
            path = root / target[len(_REPO_BLOB):].split("#")[0]
        elif re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # outside the repository
        else:
            path = md_file.parent / target.split("#")[0]
        # Lexical containment (symlinks inside the repo may point anywhere; `..` may not escape).
        rel = os.path.relpath(os.path.normpath(path), os.path.normpath(root))
        if rel == ".." or rel.startswith("../") or not path.exists():
            bad.append(target)
    return bad
