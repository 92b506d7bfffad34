"""Resolve the links in a markdown runbook to files, dashboards and panels in this repository.

A link resolves when it is
- a relative path (``../dashboards/json/x.json``, ``BcgovFoo.md#triage``) to an existing file,
- a URL into this repository (``common.RUNBOOK_BASE_URL``'s repo, any path) naming an existing file,
- a Grafana dashboard URL ``/d/<uid>`` (with or without a host) whose uid a built dashboard has,
  and, when it carries ``viewPanel=<id>``, whose dashboard has a panel with that id.
Other http(s) URLs are outside the repository and are not checked (the machines here are offline).
"""

from __future__ import annotations

import os
import pathlib
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from dashboards import common

_MD_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_GRAFANA = re.compile(r"(?:^|https?://[^/]+)/d/([\w-]+)")
_REPO_BLOB = common.RUNBOOK_BASE_URL.rsplit("/runbooks", 1)[0] + "/"

# uid -> panel id -> panel (the built dashboards, as `panels_by_uid` makes them)
Panels = Mapping[str, Mapping[int, dict[str, Any]]]


def links(text: str) -> list[str]:
    """Every markdown link target in `text` (inline links; code spans are stripped first)."""
    no_code = re.sub(r"```.*?```", "", text, flags=re.S)
    no_code = re.sub(r"`[^`]*`", "", no_code)
    return _MD_LINK.findall(no_code)


def panels_by_uid(dashboards: Mapping[str, dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Built dashboards (file name -> JSON) as uid -> panel id -> panel, rows' children included."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for dash in dashboards.values():
        by_id: dict[int, dict[str, Any]] = {}
        for p in dash.get("panels", []):
            for panel in (p, *p.get("panels", [])):
                if isinstance(panel.get("id"), int):
                    by_id[panel["id"]] = panel
        out[dash["uid"]] = by_id
    return out


def grafana_target(target: str) -> tuple[str, int | None] | None:
    """(uid, viewPanel id or None) of a Grafana dashboard link, None for any other link.
    A viewPanel that is not a number comes back as -1, which no panel has."""
    m = _GRAFANA.match(target)
    if not m:
        return None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    view = query.get("viewPanel", [None])[0]
    if view is None:
        return m.group(1), None
    return m.group(1), int(view) if view.isdigit() else -1


def dashboard_links(text: str) -> list[tuple[str, int | None]]:
    """(uid, panel id or None) for every Grafana dashboard link in a runbook's text."""
    return [g for g in (grafana_target(t) for t in links(text)) if g is not None]


def unresolved(md_file: pathlib.Path, root: pathlib.Path, panels: Panels) -> list[str]:
    """The link targets in `md_file` that name no file, dashboard or panel of the repository."""
    bad = []
    for target in links(md_file.read_text(encoding="utf-8")):
        if target.startswith("#") or target.startswith("mailto:"):
            continue
        g = grafana_target(target)
        if g is not None:
            uid, panel = g
            if uid not in panels or (panel is not None and panel not in panels[uid]):
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
