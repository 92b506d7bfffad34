"""Span building, OTLP JSON encoding and the bounded export queue, with in-memory parts."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Sequence
from types import SimpleNamespace

from agent_harness import connection as _conn
from otlp_json_reference import otlp_json_request
from prometheus_client import CollectorRegistry, generate_latest

from agent.export.event_log import EventLog
from agent.export.queue import SpanQueue
from agent.export.span_model import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, IdSource, SpanData
from agent.export.spans import JsonlFileExporter
from agent.identity.block_devices import BlockDeviceResolver
from agent.identity.enricher import Enricher
from agent.metrics.instruments import Instruments
from agent.metrics.labels import KeyLabels
from agent.pipeline.clock import MonotonicToWall
from agent.pipeline.router import EventPipeline
from agent.pipeline.sampling import SpanSampler
from probes import families, tcp_lifecycle


class _Memory:
    def __init__(self, ok: bool = True) -> None:
        self.spans: list[SpanData] = []
        self.ok = ok
        self.calls = threading.Event()

    def export(self, spans: Sequence[SpanData]) -> bool:
        self.spans.extend(spans)
        self.calls.set()
        return self.ok

    def shutdown(self) -> None:
        pass


def _pipeline() -> tuple[SimpleNamespace, list[SpanData], io.StringIO, CollectorRegistry]:
    reg = CollectorRegistry()
    spans: list[SpanData] = []
    log = io.StringIO()
    fixed = MonotonicToWall(lambda: 0, lambda: 1_000_000_000, resample_every_ns=10**18, samples=1)
    instruments = Instruments(reg, Enricher())
    p = EventPipeline(fixed, Enricher(), instruments, spans.append, EventLog(log), IdSource(seed=1))
    return SimpleNamespace(handle=p.handler(tcp_lifecycle.SPEC), instruments=instruments), spans, log, reg


def _duration_labels(enricher: Enricher) -> KeyLabels:
    """The duration histogram's own label decoders (what the scrape labels an exemplar's key with)."""
    (family,) = [m for m in tcp_lifecycle.METRICS if isinstance(m, families.HistogramFamily)]
    return KeyLabels(family.labels, enricher, BlockDeviceResolver(), lambda _name: {})


def test_client_span_attributes_events_and_wall_clock() -> None:
    p, spans, log, reg = _pipeline()
    p.handle(_conn())
    (s,) = spans
    assert s.kind == KIND_CLIENT and s.name == "tcp connect"
    assert (s.start_ns, s.end_ns) == (1_000_001_000, 1_000_003_000)
    a = s.attributes
    assert a["server.address"] == "10.0.0.2" and a["server.port"] == 5432 and a["client.port"] == 40000
    assert a["network.peer.address"] == "10.0.0.2" and a["process.pid"] == 42
    assert a["process.executable.name"] == "psql" and a["bcgov.tcp.bytes_sent"] == 10
    assert [(e.name, e.time_ns) for e in s.events] == [("tcp.retransmit", 1_000_001_500), ("tcp.retransmit", 1_000_001_700)]
    line = json.loads(log.getvalue())
    assert line["trace_id"] == s.trace_id_hex and line["span_id"] == s.span_id_hex
    # The kernel counts the duration; the pipeline notes the span as the exemplar of the kernel's
    # slot for it: 2 us -> bit length 2.
    ((key, slot, ex),) = p.instruments.exemplars.take("bcgov_tcp_connection_duration_seconds", tcp_lifecycle.DURATION_SLOTS)
    assert (_duration_labels(Enricher())(key), slot) == (("active", "normal"), 2)
    assert ex.labels == {"trace_id": s.trace_id_hex, "span_id": s.span_id_hex} and ex.value == 2e-6


def test_server_span_and_failed_connect_status() -> None:
    p, spans, _, _ = _pipeline()
    p.handle(_conn(direction="passive", owner_source="io"))
    p.handle(_conn(outcome="refused", established_ns=0, reset_ns=2_000, reset_received=True))
    server, refused = spans
    assert server.kind == KIND_SERVER and server.attributes["server.port"] == 40000
    assert refused.status_code == STATUS_ERROR and refused.attributes["error.type"] == "connection_refused"
    assert refused.events[-1].name == "tcp.reset"
    assert "bcgov.tcp.handshake_seconds" not in refused.attributes


def test_otlp_json_shape() -> None:
    s = SpanData(trace_id=1, span_id=2, name="n", kind=3, start_ns=5, end_ns=6, attributes={"a": 1, "b": "x", "c": True, "d": ["p"]})
    req = otlp_json_request([s], {"service.name": "bcgov-agent"}, "1.0")
    span = req["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "0" * 31 + "1" and span["spanId"] == "0" * 15 + "2"
    assert span["startTimeUnixNano"] == "5"
    assert span["attributes"] == [
        {"key": "a", "value": {"intValue": "1"}},
        {"key": "b", "value": {"stringValue": "x"}},
        {"key": "c", "value": {"boolValue": True}},
        {"key": "d", "value": {"arrayValue": {"values": [{"stringValue": "p"}]}}},
    ]
    assert req["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"] == "bcgov-agent"


def test_queue_drops_and_counts_when_full_and_when_export_fails(tmp_path) -> None:
    drops: dict[str, int] = {}
    exporter = _Memory(ok=False)
    q = SpanQueue(exporter, on_drop=lambda r, n: drops.__setitem__(r, drops.get(r, 0) + n), max_queue=5, max_batch=100, interval_s=60)
    span = SpanData(1, 1, "n", 3, 0, 1, {})
    for _ in range(8):
        q.submit(span)
    q.shutdown()
    assert drops == {"queue_full": 3, "export_failed": 5}
    assert len(exporter.spans) == 5


def test_file_exporter_writes_one_request_per_line(tmp_path) -> None:
    path = tmp_path / "sub" / "spans.jsonl"
    e = JsonlFileExporter(str(path), {"service.name": "x"}, "1")
    assert e.export([SpanData(1, 1, "a", 3, 0, 1, {})]) and e.export([SpanData(2, 2, "b", 2, 0, 1, {})])
    e.shutdown()
    lines = path.read_text().splitlines()
    assert [json.loads(x)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] for x in lines] == ["a", "b"]


def test_sampling_keeps_failures_resets_and_slow_ones_and_counts_the_rest() -> None:
    reg = CollectorRegistry()
    spans: list[SpanData] = []
    fixed = MonotonicToWall(lambda: 0, lambda: 0, resample_every_ns=10**18, samples=1)
    instruments = Instruments(reg, Enricher())
    pipeline = EventPipeline(fixed, Enricher(), instruments, spans.append, EventLog(io.StringIO()),
                             IdSource(seed=3), sampler=SpanSampler(ratio=0.0, slow_seconds=1.0))
    p = SimpleNamespace(handle=pipeline.handler(tcp_lifecycle.SPEC), instruments=instruments)
    p.handle(_conn(retransmits=0, retransmit_ns=()))               # normal, fast: sampled out
    p.handle(_conn(outcome="refused", established_ns=0))           # failed: kept
    p.handle(_conn(outcome="reset", reset_received=True))          # reset: kept
    p.handle(_conn(retransmits=0, retransmit_ns=(), end_ns=2_000_000_000))  # slow: kept
    p.handle(_conn())                                              # retransmitted: kept
    assert [s.attributes["bcgov.tcp.outcome"] for s in spans] == ["refused", "reset", "normal", "normal"]
    text = generate_latest(reg).decode()
    assert "bcgov_agent_spans_sampled_out_total 1.0" in text
    # Exemplars only from kept spans: the sampled-out connection has none.
    exemplar_ids = {ex.labels["trace_id"] for _, _, ex in p.instruments.exemplars.take("bcgov_tcp_connection_duration_seconds", tcp_lifecycle.DURATION_SLOTS)}
    assert exemplar_ids and exemplar_ids <= {s.trace_id_hex for s in spans}


def test_sample_ratio_is_roughly_honoured() -> None:
    s = SpanSampler(ratio=0.25)
    kept = sum(s.keep(_conn(sock=i, retransmits=0, retransmit_ns=())) for i in range(4000))
    assert 800 < kept < 1200


def test_a_span_whose_retransmit_events_were_cut_says_how_many() -> None:
    # The case: the span said 5 retransmits while only 4 retransmit events rode on it.
    p, spans, log, _ = _pipeline()
    p.handle(_conn(retransmits=5, retransmit_ns=(1_100, 1_200, 1_300, 1_400)))
    p.handle(_conn(retransmits=4, retransmit_ns=(1_100, 1_200, 1_300, 1_400)))
    cut, whole = spans
    assert len(cut.events) == 4 and cut.attributes["bcgov.tcp.retransmit_events_dropped"] == 1
    assert "bcgov.tcp.retransmit_events_dropped" not in whole.attributes
    first_line = json.loads(log.getvalue().splitlines()[0])
    assert first_line["attributes"]["bcgov.tcp.retransmit_events_dropped"] == 1
