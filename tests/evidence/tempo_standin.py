"""A STAND-IN for Grafana Tempo's query frontend (no Tempo can run here), for `--otlp-query`.

It replays recorded answers in Tempo's HTTP API wire format (fixtures/tempo.json):
- `GET /api/search?tags=<logfmt>&start=&end=&limit=` -> `{"traces": [...], "metrics": {...}}`,
  listing the recorded traces that have a span whose resource + span attributes carry every tag and
  that overlaps [start, end] (Tempo's search semantics); traceIDs as Tempo prints them;
- `GET /api/traces/<traceID>` -> the recorded trace (`{"batches": [...]}`, base64 ids), any
  zero-padding of the id accepted; 404 `trace not found` otherwise.
Every request is recorded for the tests' assertions.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shlex
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import serve_http

FIXTURE = Path(__file__).parent / "fixtures" / "tempo.json"


@dataclass
class StandInTempo:
    search: dict[str, Any]
    traces: dict[str, dict[str, Any]]
    port: int = 0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def matching(self, tags: dict[str, str], start: int, end: int) -> list[dict[str, Any]]:
        out = []
        for entry in self.search["traces"]:
            trace = self.traces[entry["traceID"].rjust(32, "0")]
            if any(_span_matches(rs, sp, tags, start, end) for rs, sp in _spans(trace)):
                out.append(entry)
        return out


def _attrs(attrs: list[dict[str, Any]]) -> dict[str, str]:
    return {a["key"]: str(next(iter(a["value"].values()))) for a in attrs or []}


def _spans(trace: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for rs in trace["batches"]:
        for ss in rs.get("scopeSpans", rs.get("instrumentationLibrarySpans", [])):
            for sp in ss["spans"]:
                yield rs, sp


def _span_matches(rs: dict[str, Any], sp: dict[str, Any], tags: dict[str, str], start: int, end: int) -> bool:
    attrs = {**_attrs(rs["resource"]["attributes"]), **_attrs(sp["attributes"])}
    s, e = int(sp["startTimeUnixNano"]) / 1e9, int(sp["endTimeUnixNano"]) / 1e9
    return all(attrs.get(k) == v for k, v in tags.items()) and e >= start and s <= end


def parse_logfmt(text: str) -> dict[str, str]:
    """`a=b c="d e"` -> {"a": "b", "c": "d e"} (what Tempo accepts in `tags`)."""
    return dict(part.split("=", 1) for part in shlex.split(text))


def _trace_key(raw: str) -> str:
    return raw.lower().rjust(32, "0")


@contextlib.contextmanager
def serve(fixture: Path = FIXTURE) -> Iterator[StandInTempo]:
    """The stand-in on a free loopback port until the block exits."""
    data = json.loads(fixture.read_text())
    state = StandInTempo(data["search"], {k.lower(): v for k, v in data["traces"].items()})

    class Handler(http.server.BaseHTTPRequestHandler):
        def _json(self, code: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            state.requests.append((url.path, q))
            if url.path == "/api/search":
                try:
                    tags, start, end = parse_logfmt(q["tags"]), int(q["start"]), int(q["end"])
                except (KeyError, ValueError) as exc:
                    self._json(400, {"error": f"invalid search request: {exc}"})
                    return
                found = state.matching(tags, start, end)[: int(q.get("limit", 20))]
                self._json(200, {"traces": found, "metrics": {**state.search["metrics"], "inspectedTraces": len(state.traces)}})
            elif url.path.startswith("/api/traces/"):
                trace = state.traces.get(_trace_key(url.path.rsplit("/", 1)[1]))
                if trace is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "15")
                    self.end_headers()
                    self.wfile.write(b"trace not found")
                    return
                self._json(200, trace)
            else:
                self._json(404, {"error": "not found"})

        def log_message(self, *args: Any) -> None:
            pass

    with serve_http(Handler, "tempo-standin") as port:
        state.port = port
        yield state
