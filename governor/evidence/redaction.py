"""Structural redaction of telemetry before it is written, over the agent's rules (agent/redact.py).

Every string is passed through `redact_text`; lists under an argv-like key through `redact_argv`
(which also masks the value after a bare `--password`). Redacting again what the agent already
redacted is harmless: the rules are idempotent.
"""

from __future__ import annotations

from typing import Any

from agent.redact import redact_argv, redact_text

_ARGV_KEYS = ("process.command_args", "argv", "args", "process.command_line")


def redact_value(value: Any, key: str = "") -> Any:
    """`value` with every secret-looking string masked, recursing through dicts and lists."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        if key in _ARGV_KEYS and all(isinstance(v, str) for v in value):
            return redact_argv(value)
        return [redact_value(v, key) for v in value]
    return value


def redact_otlp_attributes(attrs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OTLP `[{"key", "value": {"stringValue"|"arrayValue"...}}]` with argv arrays masked as argv."""
    out = []
    for a in attrs:
        key, val = a.get("key", ""), a.get("value", {})
        if key in _ARGV_KEYS and "arrayValue" in val:
            items = [v.get("stringValue", "") for v in val["arrayValue"].get("values", [])]
            val = {"arrayValue": {"values": [{"stringValue": s} for s in redact_argv(items)]}}
        else:
            val = redact_value(val)
        out.append({"key": key, "value": val})
    return out
