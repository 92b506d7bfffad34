"""Structural redaction of telemetry before it is written, over the agent's rules (agent/redaction/redact.py).

Every string is passed through `redact_text`; lists under an argv-like key through `redact_argv`
(which also masks the value after a bare `--password`). Redacting again what the agent already
redacted is harmless: the rules are idempotent.
"""

from __future__ import annotations

import functools
from typing import Any

from agent.redaction.redact import redact_argv, redact_text

ARGV_KEYS = ("process.command_args", "argv", "args", "process.command_line")


# The same strings and command lines recur thousands of times in an incident window (pod names,
# `pgbench -c 8`): the rules are pure functions, so their answers are remembered (bounded).
@functools.lru_cache(maxsize=1 << 16)
def _text(s: str) -> str:
    return redact_text(s)


@functools.lru_cache(maxsize=1 << 14)
def _argv(argv: tuple[str, ...]) -> list[str]:
    return redact_argv(list(argv))


def redact_value(value: Any, key: str = "") -> Any:
    """`value` with every secret-looking string masked, recursing through dicts and lists."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        if key in ARGV_KEYS and all(isinstance(v, str) for v in value):
            return list(_argv(tuple(value)))
        return [redact_value(v, key) for v in value]
    return value


def redact_otlp_attributes(attrs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OTLP `[{"key", "value": {"stringValue"|"arrayValue"...}}]` with argv arrays masked as argv."""
    out = []
    for a in attrs:
        key, val = a.get("key", ""), a.get("value", {})
        if key in ARGV_KEYS and "arrayValue" in val:
            items = [v.get("stringValue", "") for v in val["arrayValue"].get("values", [])]
            val = {"arrayValue": {"values": [{"stringValue": s} for s in redact_argv(items)]}}
        else:
            val = redact_value(val)
        out.append({"key": key, "value": val})
    return out
