"""The agent's spans (OTLP JSON lines, agent/spans.py) and event log lines (agent/event_log.py),
cut to the window and scope and redacted. trace_id/span_id are kept so the pillars still join."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from governor.evidence import redaction
from governor.evidence.errors import SourceMissing
from governor.evidence.scope import Scope
from governor.evidence.timewindow import Window, parse_time


def otlp_value(v: dict[str, Any]) -> Any:
    """A plain Python value from an OTLP JSON AnyValue."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [otlp_value(x) for x in v["arrayValue"].get("values", [])]
    return None


def otlp_attrs(attrs: list[dict[str, Any]]) -> dict[str, Any]:
    return {a["key"]: otlp_value(a.get("value", {})) for a in attrs or []}


@dataclasses.dataclass
class Spans:
    """Spans kept: OTLP request lines (redacted) and a flat view for the timeline and identity."""

    lines: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    flat: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # attrs, events, times, ids
    skipped_bad_lines: int = 0


def _json_lines(path: Path, what: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or None when the line is not JSON)."""
    try:
        fh = path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SourceMissing(what, f"cannot read {path} ({exc.strerror}); pass the agent's file with --{what}-file") from exc
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except ValueError:
                yield n, None


def read_spans(path: Path, window: Window, scope: Scope) -> Spans:
    """Spans in the agent's file (OTLP JSON requests, one a line) overlapping the window whose
    resource or span attributes are in scope."""
    return filter_spans((req for _, req in _json_lines(path, "spans")), window, scope)


def filter_spans(requests: Iterable[Any], window: Window, scope: Scope) -> Spans:
    """OTLP JSON requests (`{"resourceSpans": [...]}`) cut to the window and scope, redacted; from
    the agent's file or a trace backend (tempo.py). Anything that is not a request is counted."""
    out = Spans()
    for req in requests:
        if not isinstance(req, dict):
            out.skipped_bad_lines += 1
            continue
        kept_rs = []
        for rs in req.get("resourceSpans", []):
            res_attrs = otlp_attrs(rs.get("resource", {}).get("attributes", []))
            kept_ss = []
            for ss in rs.get("scopeSpans", []):
                kept = []
                for sp in ss.get("spans", []):
                    start, end = int(sp["startTimeUnixNano"]) / 1e9, int(sp["endTimeUnixNano"]) / 1e9
                    attrs = {**res_attrs, **otlp_attrs(sp.get("attributes", []))}
                    if end < window.start or start > window.end or not scope.matches(attrs):
                        continue
                    sp = {**sp, "attributes": redaction.redact_otlp_attributes(sp.get("attributes", [])),
                          "events": [{**e, "attributes": redaction.redact_otlp_attributes(e.get("attributes", []))}
                                     for e in sp.get("events", [])]}
                    if "status" in sp:
                        sp["status"] = redaction.redact_value(sp["status"])
                    kept.append(sp)
                    out.flat.append({"name": sp.get("name"), "trace_id": sp.get("traceId"), "span_id": sp.get("spanId"),
                                     "start": start, "end": end, "attributes": redaction.redact_value(attrs),
                                     "events": [(int(e["timeUnixNano"]) / 1e9, e.get("name"), otlp_attrs(e.get("attributes", [])))
                                                for e in sp["events"]]})
                if kept:
                    kept_ss.append({**ss, "spans": kept})
            if kept_ss:
                resource = {**rs.get("resource", {}),
                            "attributes": redaction.redact_otlp_attributes(rs.get("resource", {}).get("attributes", []))}
                kept_rs.append({**rs, "resource": resource, "scopeSpans": kept_ss})
        if kept_rs:
            out.lines.append({"resourceSpans": kept_rs})
    return out


@dataclasses.dataclass
class Logs:
    """Log records kept (redacted), each with its parsed Unix time under `_ts` stripped on write."""

    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    skipped_bad_lines: int = 0


def read_logs(path: Path, window: Window, scope: Scope) -> Logs:
    """Event log lines inside the window and scope, in file order."""
    out = Logs()
    for _, rec in _json_lines(path, "logs"):
        if not isinstance(rec, dict) or "time" not in rec:
            out.skipped_bad_lines += 1
            continue
        try:
            ts = parse_time(str(rec["time"]), 0.0)
        except Exception:  # noqa: BLE001 - a bad line is counted, never fatal
            out.skipped_bad_lines += 1
            continue
        if not window.contains(ts) or not scope.matches(rec.get("attributes") or {}):
            continue
        out.records.append(redaction.redact_value(rec))
    return out


def log_time(rec: dict[str, Any]) -> float:
    return parse_time(str(rec["time"]), 0.0)
