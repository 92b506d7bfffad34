"""Build the bcgov Grafana dashboards to JSON (what users import, and what dashboards/json/ holds).

    bcgov dashboards build [--out DIR]
"""

from __future__ import annotations

import json
import pathlib

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import definitions

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "json"


def render(name: str) -> str:
    """One dashboard's JSON text, deterministic (sorted keys, fixed indent, trailing newline)."""
    model = definitions.ALL[name]().build()
    # Round-trip through the SDK encoder, then dump sorted so the committed files diff cleanly.
    data = json.loads(json.dumps(model, cls=JSONEncoder))
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    """File name -> JSON text for every dashboard."""
    return {f"{name}.json": render(name) for name in definitions.ALL}


def write(out: pathlib.Path = DEFAULT_OUT) -> list[pathlib.Path]:
    """Write every dashboard into `out` (created if needed); return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in render_all().items():
        path = out / fname
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
