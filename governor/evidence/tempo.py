"""Spans from a Tempo-compatible trace backend (`--otlp-query URL`), as OTLP JSON requests.

Tempo's HTTP API, two calls:
- `GET /api/search?tags=<logfmt>&start=<unix s>&end=<unix s>&limit=N` answers
  `{"traces": [{"traceID": "...", ...}]}`; the tags are the scope's identity attributes (the
  agent puts them on every span), or `service.name=bcgov-agent` when there is no scope.
- `GET /api/traces/<traceID>` answers the trace as OTLP JSON: `{"batches": [ResourceSpans]}`
  (Tempo 1.x/2.x), `{"resourceSpans": [...]}` or, from `/api/v2/traces`, `{"trace": {...}}`.
  Older Tempo calls scope spans `instrumentationLibrarySpans`; protobuf JSON renders ids as base64.

Each trace is normalised to the agent's file format (`{"resourceSpans": [...]}` with `scopeSpans`
and lowercase hex ids, so trace ids still join the log lines) and then cut to the window and scope
like the file (telemetry.filter_spans). A backend that cannot be reached or answers nonsense
raises SourceMissing("otlp-query", ...): the bundle goes on without spans and is partial.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

from governor import errors as gov_errors
from governor import http
from governor.evidence.errors import SourceMissing
from governor.evidence.scope import ATTRIBUTE_OF, Scope
from governor.evidence.timewindow import Window

SOURCE = "otlp-query"
AGENT_SERVICE = "bcgov-agent"
# Bound the bundle: an incident window with more traces than this needs a narrower scope.
SEARCH_LIMIT = 5000
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def search_tags(scope: Scope) -> str:
    """Tempo's `tags` parameter (logfmt) for the scope; values are quoted when they need it."""
    pairs = [(ATTRIBUTE_OF[k], v) for k, v in scope.labels().items()] or [("service.name", AGENT_SERVICE)]
    return " ".join(f"{k}={_logfmt(v)}" for k, v in pairs)


def _logfmt(v: str) -> str:
    if v and not re.search(r'[\s="\\]', v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def normalise_id(value: Any, size: int) -> str:
    """A trace (16 bytes) or span (8 bytes) id as lowercase hex: hex as is (left-padded, as Tempo's
    search trims leading zeros), else protobuf-JSON base64; '' when it is neither."""
    if not isinstance(value, str) or not value:
        return ""
    if _HEX.match(value) and len(value) <= 2 * size:
        return value.lower().rjust(2 * size, "0")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return ""
    return raw.hex() if len(raw) == size else ""


def normalise_trace(body: Any) -> dict[str, Any]:
    """Any of Tempo's trace answers -> `{"resourceSpans": [...]}` in the agent's file format."""
    if not isinstance(body, dict):
        raise ValueError("the trace is not a JSON object")
    if isinstance(body.get("trace"), dict):  # /api/v2/traces
        body = body["trace"]
    batches = body.get("batches", body.get("resourceSpans"))
    if not isinstance(batches, list):
        raise ValueError("the trace has neither 'batches' nor 'resourceSpans'")
    out = []
    for rs in batches:
        scope_spans = rs.get("scopeSpans", rs.get("instrumentationLibrarySpans")) or []
        kept = []
        for ss in scope_spans:
            spans = []
            for sp in ss.get("spans") or []:
                sp = dict(sp)
                sp["traceId"] = normalise_id(sp.get("traceId"), 16)
                sp["spanId"] = normalise_id(sp.get("spanId"), 8)
                if sp.get("parentSpanId"):
                    sp["parentSpanId"] = normalise_id(sp["parentSpanId"], 8)
                spans.append(sp)
            scope = ss.get("scope", ss.get("instrumentationLibrary", {}))
            kept.append({"scope": scope, "spans": spans})
        out.append({"resource": rs.get("resource", {}), "scopeSpans": kept})
    return {"resourceSpans": out}


class TempoClient:
    """Search and fetch traces from `base_url` over the shared HTTP client (auth, TLS, retries)."""

    def __init__(self, base_url: str, options: http.HttpOptions | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http.Http(options or http.HttpOptions(), "the trace backend",
                               "check that Tempo's query frontend is running and the URL is right, or pass --spans-file")

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        url = f"{self.base_url}{path}"
        try:
            resp = self._http.request("GET", url, params=params)
        except gov_errors.GovernorError as exc:
            raise SourceMissing(SOURCE, str(exc)) from exc
        if resp.status_code == 404 and path.startswith("/api/traces/"):
            return None
        if resp.status_code != 200:
            raise SourceMissing(SOURCE, f"{url} answered HTTP {resp.status_code}: {gov_errors.bounded(resp.text, 200)}")
        try:
            return resp.json()
        except ValueError as exc:
            raise SourceMissing(SOURCE, f"{url} did not answer JSON; is it a Tempo query frontend?") from exc

    def trace_ids(self, window: Window, scope: Scope) -> list[str]:
        """Trace ids the backend lists for the scope in the window (at most SEARCH_LIMIT)."""
        body = self._get("/api/search", {"tags": search_tags(scope), "start": int(window.start),
                                         "end": int(window.end) + 1, "limit": SEARCH_LIMIT})
        traces = body.get("traces") if isinstance(body, dict) else None
        if not isinstance(traces, list):
            raise SourceMissing(SOURCE, f"{self.base_url}/api/search answered without a 'traces' list; is it Tempo?")
        return [str(t["traceID"]) for t in traces if isinstance(t, dict) and t.get("traceID")]

    def traces(self, window: Window, scope: Scope) -> Iterator[dict[str, Any]]:
        """Every listed trace, normalised to the agent's OTLP JSON request format."""
        for trace_id in self.trace_ids(window, scope):
            body = self._get(f"/api/traces/{trace_id}", {"start": int(window.start), "end": int(window.end) + 1})
            if body is None:  # listed by the search, but the backend no longer has it
                continue
            try:
                yield normalise_trace(body)
            except ValueError as exc:
                raise SourceMissing(SOURCE, f"trace {trace_id}: {exc}; is {self.base_url} a Tempo query frontend?") from exc
