"""`bcgov evidence export --otlp-query URL` against a STAND-IN Tempo query frontend
(tests/evidence/tempo_standin.py replays recorded answers in Tempo's wire format: no Tempo can run
here), through the real `bcgov` console script; and the id/format normalisation on its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from governor.evidence import tempo  # noqa: E402
from governor.evidence.scope import Scope  # noqa: E402
from tests import servers  # noqa: E402
from tests.evidence import tempo_standin  # noqa: E402

BCGOV = str(ROOT / ".venv" / "bin" / "bcgov")
IN_SCOPE = "004bf92f3577b34da6a3ce929d0e0e47"
OUT_OF_SCOPE = "7d2c0a1e5b8f4c3a9e6d1b2a3c4d5e6f"
SECRET = "PLANTED-tempo-s3cr3t"
WINDOW = ["--since", "2026-03-01T09:59:00Z", "--until", "2026-03-01T10:05:00Z"]


def export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BCGOV, "evidence", "export", *WINDOW, *args], capture_output=True, text=True, timeout=120)


def _spans(out: Path) -> list[dict]:
    return [sp for line in (out / "spans.jsonl").read_text().splitlines()
            for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]


def test_spans_come_from_the_trace_backend_scoped_and_redacted(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with tempo_standin.serve() as standin:
        res = export("--namespace", "payments", "--otlp-query", standin.url, "--out", str(out))
    assert res.returncode == 0, res.stderr
    searches = [q for path, q in standin.requests if path == "/api/search"]
    assert searches == [{"tags": "k8s.namespace.name=payments", "start": "1772359140", "end": "1772359501",
                         "limit": str(tempo.SEARCH_LIMIT)}]
    # search listed the in-scope trace with its leading zeros trimmed, as Tempo does; it was fetched
    fetched = [p for p, _ in standin.requests if p.startswith("/api/traces/")]
    assert fetched == [f"/api/traces/{IN_SCOPE.lstrip('0')}"]

    (span,) = _spans(out)
    assert span["traceId"] == IN_SCOPE and span["spanId"] == "00f067aa0ba902b7"  # base64 -> hex, joins logs
    attrs = {a["key"]: a["value"] for a in span["attributes"]}
    assert attrs["k8s.pod.name"] == {"stringValue": "ledger-0"}
    assert attrs["url.full"]["stringValue"].startswith("postgres://ledger:***@")
    for p in out.rglob("*"):
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p
    mf = json.loads((out / "MANIFEST.json").read_text())
    assert mf["sources"] == {"otlp-query": standin.url} and mf["complete"] is True
    assert "spans" not in mf["not_requested"]
    timeline = (out / "timeline.md").read_text()
    assert f"connection reset (received), payments ledger-0 ledger oltp (trace {IN_SCOPE})" in timeline
    ident = json.loads((out / "identity.json").read_text())
    assert ident["pods"] == ["ledger-0"]


def test_without_a_scope_the_agents_service_is_searched_and_every_trace_kept(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with tempo_standin.serve() as standin:
        res = export("--otlp-query", standin.url + "/", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert [q["tags"] for p, q in standin.requests if p == "/api/search"] == ["service.name=bcgov-agent"]
    spans = _spans(out)
    assert sorted(s["traceId"] for s in spans) == sorted([IN_SCOPE, OUT_OF_SCOPE])
    # the older Tempo's instrumentationLibrarySpans came out as scopeSpans
    assert {s["name"] for s in spans} == {"tcp connect", "tcp accept"}


def test_unreachable_backend_is_a_missing_source_and_a_partial_bundle(tmp_path: Path) -> None:
    closed = servers.free_port()
    out = tmp_path / "bundle"
    res = export("--namespace", "payments", "--otlp-query", f"http://127.0.0.1:{closed}", "--retries", "0",
                 "--out", str(out))
    assert res.returncode == 3, res.stderr
    assert "otlp-query missing" in res.stderr and "connection refused" in res.stderr
    mf = json.loads((out / "MANIFEST.json").read_text())
    assert mf["complete"] is False and "connection refused" in mf["missing"]["otlp-query"]
    assert "--spans-file" in mf["missing"]["otlp-query"]  # the message names the way out
    assert (out / "spans.jsonl").read_text() == "" and (out / "timeline.md").is_file()
    ok = subprocess.run([BCGOV, "evidence", "verify", str(out)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_a_backend_that_is_not_tempo_is_named(tmp_path: Path) -> None:
    with servers.serve_exposition("# HELP x not tempo\n") as not_tempo:  # answers 404 off /metrics
        res = export("--otlp-query", f"http://{not_tempo.target}", "--out", str(tmp_path / "b"))
    assert res.returncode == 3
    mf = json.loads((tmp_path / "b" / "MANIFEST.json").read_text())
    assert "HTTP 404" in mf["missing"]["otlp-query"]


def test_spans_file_and_otlp_query_together_is_a_usage_error(tmp_path: Path) -> None:
    res = export("--otlp-query", "http://127.0.0.1:1", "--spans-file", str(tmp_path / "s"), "--out", str(tmp_path / "b"))
    assert res.returncode == 2 and "either --spans-file or --otlp-query" in res.stderr


@pytest.mark.parametrize(("value", "size", "expected"), [
    ("4bf92f3577b34da6a3ce929d0e0e4736", 16, "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("4BF92F3577B34DA6A3CE929D0E0E4736", 16, "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("4bf92f3577b34da6a3ce929d0e0e47", 16, IN_SCOPE),  # Tempo's search trims leading zeros
    ("AEv5LzV3s02mo86SnQ4ORw==", 16, IN_SCOPE),  # protobuf JSON: base64 of the 16 bytes
    ("AEv5LzV3s02mo86SnQ4O", 16, ""),  # base64 of 15 bytes: not a trace id
    ("APBnqgupArc=", 8, "00f067aa0ba902b7"),
    ("4bf92f3577b34da6a3ce929d0e0e47361", 16, ""),  # too long
    ("", 8, ""),
    (None, 8, ""),
    ("not an id!", 8, ""),
])
def test_normalise_id(value: object, size: int, expected: str) -> None:
    assert tempo.normalise_id(value, size) == expected


@pytest.mark.parametrize("wrap", [
    lambda rs: {"batches": rs},
    lambda rs: {"resourceSpans": rs},
    lambda rs: {"trace": {"resourceSpans": rs}, "status": "COMPLETE"},  # /api/v2/traces
])
def test_normalise_trace_accepts_each_answer_shape(wrap) -> None:
    rs = [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "s"}, "spans": [
        {"traceId": "AEv5LzV3s02mo86SnQ4ORw==", "spanId": "APBnqgupArc=", "parentSpanId": "APBnqgupArc=", "name": "x"}]}]}]
    (out_rs,) = tempo.normalise_trace(wrap(rs))["resourceSpans"]
    (sp,) = out_rs["scopeSpans"][0]["spans"]
    assert sp["traceId"] == IN_SCOPE
    assert sp["spanId"] == sp["parentSpanId"] == "00f067aa0ba902b7"
    assert sp["name"] == "x"


def test_normalise_trace_rejects_other_json() -> None:
    with pytest.raises(ValueError, match="neither 'batches' nor 'resourceSpans'"):
        tempo.normalise_trace({"data": []})


@pytest.mark.parametrize(("scope", "tags"), [
    (Scope(), "service.name=bcgov-agent"),
    (Scope(namespace="payments"), "k8s.namespace.name=payments"),
    (Scope(tier="oltp", namespace="payments", pod="ledger-0"), "bcgov.tier=oltp k8s.namespace.name=payments k8s.pod.name=ledger-0"),
    (Scope(namespace='we ird"ns'), 'k8s.namespace.name="we ird\\"ns"'),
])
def test_search_tags(scope: Scope, tags: str) -> None:
    assert tempo.search_tags(scope) == tags
    expected = {tempo.ATTRIBUTE_OF[k]: v for k, v in scope.labels().items()} or {"service.name": "bcgov-agent"}
    assert tempo_standin.parse_logfmt(tags) == expected  # what a logfmt reader (Tempo) gets back
