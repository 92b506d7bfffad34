"""Walking built dashboard JSON for the tests (a library module, not a conftest)."""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
JSON_DIR = ROOT / "dashboards" / "json"

# Grafana's built-in interval variables, replaced by values Prometheus accepts.
BUILTINS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
_VAR = re.compile(r"\$\{?(\w+)\}?")


def committed() -> dict[str, dict[str, Any]]:
    """File name -> parsed JSON of every committed dashboard."""
    return {p.name: json.loads(p.read_text()) for p in sorted(JSON_DIR.glob("*.json"))}


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def exprs(dash: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    for p in panels(dash):
        for t in p.get("targets", []):
            yield p["title"], t["expr"]


def substitute(expr: str) -> str:
    """Template variables -> values a real Prometheus can run: label variables match anything."""
    for k, v in BUILTINS.items():
        expr = expr.replace(k, v)
    return _VAR.sub(".*", expr)


def links(panel: dict[str, Any]) -> list[dict[str, Any]]:
    """Panel links plus field-config data links."""
    data_links = panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    return list(panel.get("links", [])) + list(data_links)
