"""The agent's spans (OTLP JSON lines, agent/export/spans.py) and event log lines (agent/export/event_log.py),
streamed: read a line, keep it when it is in the window and scope, redact it, write it to the
bundle, tell the observers (timeline, identity), forget it. Memory does not grow with the files.

Filtering while reading is cheap where the agent's format allows: an event line starts with
`{"time":"<RFC 3339 UTC, microseconds>"`, compared as text with the window's bounds before any
parse, and a scoped export looks for `"k8s.namespace.name":"<value>"` in the raw line first. A line
with no word any redaction rule needs (agent/redaction/redact.py: password, token, key, auth, `://`, ...) and
no JSON escape is written byte for byte; any other is parsed, redacted value by value and re-encoded.
trace_id/span_id are kept so the pillars still join.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import gc
import glob
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from governor.evidence import redaction
from governor.evidence.errors import SourceMissing
from governor.evidence.scope import ATTRIBUTE_OF, Scope
from governor.evidence.timewindow import Window, parse_time

Progress = Callable[[str], None]
_PROGRESS_EVERY_S = 2.0
# Every redaction rule (agent/redaction/redact.py) needs one of these in the string it masks; the secret
# words' alternatives all contain one of the first seven (api_key, access_key, ... contain "key").
_SECRET_HINTS = (b"pass", b"pwd", b"secret", b"token", b"key", b"credential", b"auth", b"://", b"bearer", b"basic",
                 b"cookie", b"sig", b"@")  # Cookie headers, signed URLs' sig=, user:pw@host without a scheme
# argv rules (per-client options such as `redis-cli -a X`, `sh -c '...'`) need no such word, so any
# line holding an argv-like key takes the redacting path.
_ARGV_NEEDLES = tuple(json.dumps(k).encode() for k in redaction.ARGV_KEYS)
_TEXT_HINTS = tuple(h for h in _SECRET_HINTS if h != b"key")
_JSON_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _loads(data: bytes) -> Any:
    """JSON from bytes: orjson (several times faster on the agent's long span lines), Python's json
    for what orjson refuses but JSON allows (integers past 64 bits)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _encode(obj: Any) -> bytes:
    """Compact JSON bytes (no newline)."""
    try:
        return orjson.dumps(obj, default=str)
    except TypeError:  # integers past 64 bits
        return _JSON_ENCODE(obj).encode()


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...


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


def may_hold_secret(line: bytes, otlp: bool = False) -> bool:
    """False only when no redaction rule can match anything in `line`: no JSON escape (which could
    spell a word another way), no argv-like key, and none of the words the text rules need. OTLP's
    own `"key":` fields are discounted when `otlp`. Checked against agent/redaction/redact.py's case corpus
    (tests/evidence/test_redaction_gate.py)."""
    if b"\\" in line:
        return True
    for needle in _ARGV_NEEDLES:
        if needle in line:
            return True
    low = line.lower()
    for hint in _TEXT_HINTS:  # plain substring searches: far cheaper than one case-blind regex
        if hint in low:
            return True
    if otlp:
        return low.count(b"key") != line.count(b'"key":')
    return b"key" in low


@dataclasses.dataclass
class Stats:
    """What one input gave: lines read, records kept, lines that were not the agent's format."""

    read: int = 0
    kept: int = 0
    skipped_bad_lines: int = 0
    files: list[str] = dataclasses.field(default_factory=list)  # read, oldest first


@dataclasses.dataclass
class FlatSpan:
    """One kept span for the timeline and identity: ids, times (Unix s), merged attributes (redacted)
    and events as (time, name, attributes)."""

    name: str
    trace_id: str
    span_id: str
    start: float
    end: float
    attributes: dict[str, Any]
    events: list[tuple[float, str, dict[str, Any]]]


def _open(path: Path, what: str) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        opt = "--spans-file" if what == "spans" else "--logs"
        raise SourceMissing(what, f"cannot read {path} ({exc.strerror}); pass the agent's file with {opt}") from exc


@contextlib.contextmanager
def _no_cycle_gc() -> Iterator[None]:
    """The cyclic GC paused while reading: a 512-span line parses into ~20k containers, and the
    collections that many allocations trigger cost a third of the reading time. What is parsed
    holds no reference cycles, so reference counting frees it all the same."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def rotated(path: Path) -> list[Path]:
    """`path` and the backups the agent's size rotation left beside it (agent/export/rotating_file.py:
    `path.1` is the newest), oldest first, so lines come in the order they were written."""
    backups = []
    for p in path.parent.glob(glob.escape(path.name) + ".*"):
        suffix = p.name[len(path.name) + 1:]
        if suffix.isdigit() and p.is_file():
            backups.append((int(suffix), p))
    return [p for _, p in sorted(backups, reverse=True)] + [path]


def _all_lines(path: Path, what: str, stats: Stats, progress: Progress) -> Iterator[bytes]:
    """Non-blank lines of `path` and its rotated backups, with a progress line every couple of
    seconds (bytes read of all of them). A file that cannot be read raises SourceMissing."""
    files = rotated(path)
    handles = [_open(p, what) for p in files]
    try:
        total = sum(_size(fh) for fh in handles)
        next_at = time.monotonic() + _PROGRESS_EVERY_S
        done = 0
        for fh in handles:
            for line in fh:
                done += len(line)
                stats.read += 1
                if not stats.read & 0xFFF and time.monotonic() >= next_at:
                    next_at = time.monotonic() + _PROGRESS_EVERY_S
                    pct = f" ({100 * done / total:.0f}%)" if total else ""
                    progress(f"{what}: {done / 1e6:.0f} of {total / 1e6:.0f} MB{pct}, {stats.kept} kept")
                if line.strip():
                    yield line
        stats.files = [str(p) for p in files]
    finally:
        for fh in handles:
            fh.close()


def _scope_needles(scope: Scope) -> list[bytes]:
    """`"k8s.namespace.name":"payments"` as the agent's compact JSON writes each scope attribute."""
    return [(json.dumps(ATTRIBUTE_OF[k]) + ":" + json.dumps(v)).encode() for k, v in scope.labels().items()]


# ------------------------------------------------------------------------------------------ spans

def read_spans(path: Path, window: Window, scope: Scope, out: Writer, observe: Callable[[FlatSpan], None],
               progress: Progress = lambda _m: None) -> Stats:
    """Spans in the agent's file (OTLP JSON requests, one a line) overlapping the window whose
    resource or span attributes are in scope, written to `out` (one request a line)."""
    stats = Stats()
    # A scoped export skips, unparsed, a line in which some scope attribute never appears as the
    # agent writes it (compact OTLP JSON: no span in that line can be in scope).
    needles = [(f'"key":{json.dumps(ATTRIBUTE_OF[k])},"value":{{"stringValue":{json.dumps(v)}}}').encode()
               for k, v in scope.labels().items()]
    with _no_cycle_gc():
        for line in _all_lines(path, "spans", stats, progress):
            if needles and b"\\" not in line and not all(n in line for n in needles):
                continue
            try:
                req = _loads(line)
            except ValueError:
                stats.skipped_bad_lines += 1
                continue
            _filter_request(req, line, window, scope, out, observe, stats)
    return stats


def filter_spans(requests: Iterable[Any], window: Window, scope: Scope, out: Writer,
                 observe: Callable[[FlatSpan], None]) -> Stats:
    """OTLP JSON requests (`{"resourceSpans": [...]}`) from a trace backend (tempo.py) cut to the
    window and scope, redacted, written to `out`. Anything that is not a request is counted."""
    stats = Stats()
    for req in requests:
        stats.read += 1
        _filter_request(req, None, window, scope, out, observe, stats)
    return stats


# Span attributes identity.json and the scope read; a span with events (the timeline's) gets all.
_OBSERVED = frozenset({*ATTRIBUTE_OF.values(), "bcgov.workload.name"})


def _some_attrs(attrs: list[dict[str, Any]], wanted: frozenset[str]) -> dict[str, Any]:
    """The `wanted` attributes of an OTLP attribute list, stopping once all are found."""
    out: dict[str, Any] = {}
    n = len(wanted)
    for a in attrs or ():
        k = a.get("key")
        if k in wanted:
            out[k] = otlp_value(a.get("value", {}))
            if len(out) == n:
                break
    return out


def _filter_request(req: Any, raw: bytes | None, window: Window, scope: Scope, out: Writer,
                    observe: Callable[[FlatSpan], None], stats: Stats) -> None:
    if not isinstance(req, dict):
        stats.skipped_bad_lines += 1
        return
    redact = raw is None or may_hold_secret(raw, otlp=True)
    all_kept = True
    kept_rs = []
    scoped = bool(scope.labels())
    for rs in req.get("resourceSpans", []):
        res_all = otlp_attrs(rs.get("resource", {}).get("attributes", []))
        res_attrs = {k: v for k, v in res_all.items() if k in _OBSERVED}
        kept_ss = []
        for ss in rs.get("scopeSpans", []):
            kept = []
            for sp in ss.get("spans", []):
                try:
                    start, end = int(sp["startTimeUnixNano"]) / 1e9, int(sp["endTimeUnixNano"]) / 1e9
                except (KeyError, TypeError, ValueError):
                    stats.skipped_bad_lines += 1
                    all_kept = False
                    continue
                if end < window.start or start > window.end:
                    all_kept = False
                    continue
                events = sp.get("events")
                # Only what the scope, timeline and identity read is decoded, unless the span has events.
                if events:
                    attrs = {**res_all, **otlp_attrs(sp.get("attributes", []))}
                else:
                    own = _some_attrs(sp.get("attributes", []), _OBSERVED)
                    attrs = {**res_attrs, **own} if res_attrs else own
                if scoped and not scope.matches(attrs):
                    all_kept = False
                    continue
                if redact:
                    sp = {**sp, "attributes": redaction.redact_otlp_attributes(sp.get("attributes", [])),
                          "events": [{**e, "attributes": redaction.redact_otlp_attributes(e.get("attributes", []))}
                                     for e in events or ()]}
                    if "status" in sp:
                        sp["status"] = redaction.redact_value(sp["status"])
                    attrs = redaction.redact_value(attrs)
                    events = sp["events"]
                kept.append(sp)
                stats.kept += 1
                observe(FlatSpan(sp.get("name", ""), sp.get("traceId", ""), sp.get("spanId", ""), start, end, attrs,
                                 [(int(e.get("timeUnixNano", 0)) / 1e9, e.get("name", ""), otlp_attrs(e.get("attributes", [])))
                                  for e in events or ()]))
            if kept:
                kept_ss.append({**ss, "spans": kept})
        if kept_ss:
            resource = rs.get("resource", {})
            if redact:
                resource = {**resource, "attributes": redaction.redact_otlp_attributes(resource.get("attributes", []))}
            kept_rs.append({**rs, "resource": resource, "scopeSpans": kept_ss})
    if not kept_rs:
        return
    if raw is not None and all_kept and not redact:
        out.write(raw if raw.endswith(b"\n") else raw + b"\n")
    else:
        out.write(_encode({"resourceSpans": kept_rs}) + b"\n")


# ------------------------------------------------------------------------------------------- logs

_IDENTITY_NEEDLES = tuple((k, f'"{k}":"'.encode()) for k in (*ATTRIBUTE_OF.values(), "bcgov.workload.name"))


def _agent_body(line: bytes) -> bytes | None:
    """The body of an agent event line without escapes (`..."body":"tcp connection closed",...`)."""
    i = line.find(b',"body":"', 37)
    if i < 0:
        return None
    j = line.find(b'"', i + 9)
    return line[i + 9:j] if j > 0 else None


def _identity(line: bytes) -> dict[str, str]:
    """The identity attributes of an agent event line without escapes, read from the text."""
    out = {}
    for key, needle in _IDENTITY_NEEDLES:
        i = line.find(needle)
        if i >= 0:
            j = line.find(b'"', i + len(needle))
            out[key] = line[i + len(needle):j].decode("utf-8", "replace")
    return out


def read_logs(path: Path, window: Window, scope: Scope, out: Writer, observe: Callable[[dict[str, Any], float], None],
              progress: Progress = lambda _m: None, parse_bodies: frozenset[str] | None = None) -> Stats:
    """Event log lines inside the window and scope, in file order, written to `out`; `observe`
    gets each kept record (redacted) with its Unix time.

    With `parse_bodies`, an agent line strictly inside the window, with no escape and nothing to
    redact, whose body is not one of those is not parsed at all: it is copied, and `observe` gets
    `{"body", "attributes"}` with the identity attributes only (the bulk of a busy node's lines are
    connection closes, which the timeline does not list)."""
    stats = Stats()
    lo, hi = _rfc3339_us(window.start).encode(), _rfc3339_us(window.end).encode()
    needles = _scope_needles(scope)
    skip_parse = {b.encode() for b in parse_bodies} if parse_bodies is not None else None
    with _no_cycle_gc():
        for line in _all_lines(path, "logs", stats, progress):
            agent_format = line.startswith(b'{"time":"') and line[36:37] == b'"'
            if agent_format:
                ts_text = line[9:36]
                if ts_text < lo or ts_text > hi:
                    continue  # outside the window: no parse
                plain = b"\\" not in line
                if needles and plain and not all(n in line for n in needles):
                    continue  # outside the scope: the agent writes compact JSON, so the pair is verbatim
                if (skip_parse is not None and plain and lo < ts_text < hi and line.endswith(b"}}\n")
                        and not may_hold_secret(line)):
                    body = _agent_body(line)
                    if body is not None and body not in skip_parse:
                        out.write(line)
                        stats.kept += 1
                        observe({"body": body.decode("utf-8", "replace"), "attributes": _identity(line)}, _agent_time(ts_text))
                        continue
            try:
                rec = _loads(line)
                ts = _agent_time(ts_text) if agent_format else parse_time(str(rec["time"]), 0.0)
            except Exception:  # noqa: BLE001 - a bad line is counted, never fatal
                stats.skipped_bad_lines += 1
                continue
            if not isinstance(rec, dict) or not window.contains(ts) or not scope.matches(rec.get("attributes") or {}):
                continue
            if may_hold_secret(line):
                rec = redaction.redact_value(rec)
                out.write(_encode(rec) + b"\n")
            else:
                out.write(line if line.endswith(b"\n") else line + b"\n")
            stats.kept += 1
            observe(rec, ts)
    return stats


_SECOND_CACHE: dict[bytes, int] = {}


def _agent_time(text: bytes) -> float:
    """Unix time of the agent's `YYYY-MM-DDTHH:MM:SS.ffffffZ` (one calendar conversion a second)."""
    head = text[:19]
    sec = _SECOND_CACHE.get(head)
    if sec is None:
        if len(_SECOND_CACHE) > 100_000:
            _SECOND_CACHE.clear()
        sec = _SECOND_CACHE[head] = calendar.timegm(time.strptime(head.decode(), "%Y-%m-%dT%H:%M:%S"))
    if text[19:20] != b"." or text[26:27] != b"Z":
        raise ValueError(f"not the agent's time format: {text!r}")
    return sec + int(text[20:26]) / 1e6


def _rfc3339_us(ts: float) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ`, the agent's event-line time format (truncated to the microsecond)."""
    us = int(ts * 1_000_000)
    sec, frac = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:06d}Z"


def _size(fh: BinaryIO) -> int:
    try:
        return os.fstat(fh.fileno()).st_size
    except OSError:
        return 0
