"""Build the bcgov Grafana dashboards to JSON (what users import, and what dashboards/json/ holds).

    bcgov dashboards build [--out DIR]   (and the Grafana provisioning files: dashboards/provisioning/,
                                          or DIR/provisioning/ with --out)
"""

from __future__ import annotations

import json
import pathlib

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import definitions, provisioning

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "json"
DEFAULT_PROVISIONING = pathlib.Path(__file__).resolve().parent / "provisioning"


def render(name: str) -> str:
    """One dashboard's JSON text, deterministic (sorted keys, fixed indent, trailing newline)."""
    model = definitions.ALL[name]().build()
    # Round-trip through the SDK encoder, then dump sorted so the committed files diff cleanly.
    data = json.loads(json.dumps(model, cls=JSONEncoder))
    number_panels(data)
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def number_panels(data: dict) -> None:
    """Give every panel (rows and their children included) a stable id, 1..n in layout order.

    Runbooks deep-link a panel as `/d/<uid>?viewPanel=<id>`; Grafana would otherwise number panels
    on import, differently per instance, and those links would break."""
    n = 0
    for panel in data.get("panels", []):
        n += 1
        panel["id"] = n
        for child in panel.get("panels", []):
            n += 1
            child["id"] = n


def render_all() -> dict[str, str]:
    """File name -> JSON text for every dashboard."""
    return {f"{name}.json": render(name) for name in definitions.ALL}


def write(out: pathlib.Path = DEFAULT_OUT, provisioning_out: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Write every dashboard into `out` (created if needed) and the Grafana provisioning files
    (dashboards/provisioning.py) into `provisioning_out` (default: dashboards/provisioning when
    `out` is the default, else `out`/provisioning, so a build elsewhere is complete); return the
    paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in render_all().items():
        path = out / fname
        path.write_text(text, encoding="utf-8")
        written.append(path)
    prov = provisioning_out if provisioning_out is not None else (DEFAULT_PROVISIONING if out == DEFAULT_OUT else out / "provisioning")
    for rel, text in provisioning.render_all().items():
        path = prov / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
