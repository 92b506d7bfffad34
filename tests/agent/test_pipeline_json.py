"""The connection hot path's hand-built JSON against the dict-based encodings it replaces, the
batched event log, identity memoised per cgroup, and the agent's own connections skipped."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

import pytest
from agent_harness import connection as _conn
from otlp_json_reference import otlp_json_request
from prometheus_client import CollectorRegistry

from agent.export.event_log import MAX_PENDING, EventLog, iso_ns, json_object
from agent.export.span_model import IdSource, SpanData, SpanEvent
from agent.export.spans import otlp_json_line
from agent.identity.block_devices import BlockDeviceResolver
from agent.identity.cache import EnrichmentCache
from agent.identity.enricher import Enricher
from agent.metrics.instruments import Instruments
from agent.metrics.labels import KeyLabels
from agent.pipeline.clock import MonotonicToWall
from agent.pipeline.router import EventPipeline
from probes import families, tcp_lifecycle
from probes.tcp_lifecycle import connection_attributes, connection_json_members


class _Identity(Enricher):
    """An enricher with pod-like attributes and peers, counting its lookups."""

    label_names = ("namespace",)

    def __init__(self) -> None:
        self.lookups = 0
        self.namespace = "payments"

    def labels_for_cgroup(self, cgroup_id: int) -> tuple[str, ...]:
        self.lookups += 1
        return (self.namespace,)

    def attributes_for(self, cgroup_id: int, pid: int) -> dict[str, Any]:
        return {**super().attributes_for(cgroup_id, pid), "k8s.namespace.name": self.namespace, "k8s.pod.name": 'ledger-"0"'}

    def peer_attributes(self, addr: str, port: int) -> dict[str, Any]:
        return {"bcgov.peer.tier": "oltp"} if port == 5432 else {}


def _pipeline(enricher: Enricher, own_pid: int | None = None) -> tuple[SimpleNamespace, list[SpanData], io.StringIO, CollectorRegistry]:
    """tcp_lifecycle's handler bound to in-memory outputs; `flush` writes the batched log lines."""
    reg = CollectorRegistry()
    spans: list[SpanData] = []
    log = io.StringIO()
    fixed = MonotonicToWall(lambda: 0, lambda: 1_000_000_000, resample_every_ns=10**18, samples=1)
    instruments, event_log = Instruments(reg, enricher), EventLog(log, batched=True)
    p = EventPipeline(fixed, enricher, instruments, spans.append, event_log, IdSource(seed=5), own_pid=own_pid)
    return SimpleNamespace(handle=p.handler(tcp_lifecycle.SPEC), flush=event_log.flush, instruments=instruments), spans, log, reg


def _duration_labels(enricher: Enricher) -> KeyLabels:
    """The duration histogram's own label decoders (what the scrape labels an exemplar's key with)."""
    (family,) = [m for m in tcp_lifecycle.METRICS if isinstance(m, families.HistogramFamily)]
    return KeyLabels(family.labels, enricher, BlockDeviceResolver(), lambda _name: {})


CONNECTIONS = [
    _conn(),
    _conn(direction="passive", owner_source="io", remote_port=51000),
    _conn(outcome="refused", established_ns=0, reset_ns=2_000, reset_received=True, bytes_sent=None, bytes_received=None),
    _conn(outcome="timeout", established_ns=0, pid=0, comm=""),
    _conn(outcome="reset", reset_sent=True, reset_ns=2_500, family=10, local_addr="fd00::1", remote_addr="fd00::2"),
    _conn(comm='we"ird\\näme', established_ns=1_000_000_123),
    _conn(retransmits=7, retransmit_ns=(1_100, 1_200, 1_300, 1_400)),  # events cut: the span says so
]


@pytest.mark.parametrize("ev", CONNECTIONS)
def test_connection_json_members_encode_exactly_the_connection_attributes(ev) -> None:
    text = "{" + connection_json_members(ev) + "}"
    assert json.loads(text) == connection_attributes(ev)
    assert list(json.loads(text)) == list(connection_attributes(ev))  # same order too


def test_log_lines_carry_the_span_attributes_and_ids_and_nothing_is_lost_at_close() -> None:
    p, spans, log, _ = _pipeline(_Identity())
    for ev in CONNECTIONS:
        p.handle(ev)
    assert log.getvalue() == ""  # batched: held until the reader's batch ends
    p.flush()
    lines = [json.loads(x) for x in log.getvalue().splitlines()]
    assert len(lines) == len(spans) == len(CONNECTIONS)
    for line, span in zip(lines, spans, strict=True):
        assert line["attributes"] == span.attributes
        assert (line["trace_id"], line["span_id"]) == (span.trace_id_hex, span.span_id_hex)
        assert line["time"] == iso_ns(span.end_ns)
    assert spans[0].attributes["bcgov.peer.tier"] == "oltp" and "bcgov.peer.tier" not in spans[1].attributes
    assert [x["severity"] for x in lines] == ["INFO", "INFO", "WARN", "WARN", "WARN", "INFO", "INFO"]


def test_batched_log_writes_at_max_pending_and_at_close() -> None:
    buf = io.StringIO()
    log = EventLog(buf, batched=True)
    for i in range(MAX_PENDING):
        log.write(i, "x", {"i": i})
    assert len(buf.getvalue().splitlines()) == MAX_PENDING  # written when the cap was reached
    log.write(0, "last", {})
    closed: list[str] = []
    buf.close = lambda: closed.append(buf.getvalue())  # type: ignore[method-assign]
    log.close()
    assert closed and closed[0].splitlines()[-1].startswith('{"time":"1970-01-01T00:00:00.000000Z"')


def test_event_log_line_is_what_json_dumps_would_write() -> None:
    attrs = {"s": 'a"b\\c\u00e9', "i": -3, "f": 0.25, "b": True, "n": None, "l": ["x", 1], "o": object()}
    buf = io.StringIO()
    EventLog(buf).write(1_700_000_000_123_456_789, "body \"q\"", attrs, severity="WARN", trace_id="ab", span_id="cd")
    line = json.loads(buf.getvalue())
    assert line == {"time": "2023-11-14T22:13:20.123456Z", "severity": "WARN", "body": 'body "q"', "trace_id": "ab",
                    "span_id": "cd", "attributes": json.loads(json.dumps(attrs, default=str))}
    assert json_object(attrs) == json.dumps(attrs, separators=(",", ":"), default=str)


def test_lean_otlp_json_equals_the_dict_encoding() -> None:
    spans = [
        SpanData(1, 2, "tcp connect", 3, 5, 6, {"a": 1, "b": "x\"y", "c": True, "d": ["p", 2], "e": 0.5, "f": "é"},
                 [SpanEvent("tcp.retransmit", 7, {"bcgov.tcp.retransmit.index": 1})]),
        SpanData(2**128 - 1, 2**64 - 1, "tcp accept", 2, 8, 9, {}, [], 2, "connection reset"),
    ]
    resource = {"service.name": "bcgov-agent", "host.name": "n1"}
    for _ in range(2):  # the second time from cached fragments
        assert json.loads(otlp_json_line(spans, resource, "1.2")) == otlp_json_request(spans, resource, "1.2")


def test_identity_is_looked_up_once_per_cgroup_within_its_ttl() -> None:
    enricher = _Identity()
    now = [100.0]
    cache = EnrichmentCache(enricher, ttl_s=1.0, clock=lambda: now[0])
    assert cache.workload(7)[0] == ("payments",)
    enricher.namespace = "ledger"
    assert cache.workload(7)[0] == ("payments",) and enricher.lookups == 1
    assert cache.workload(8)[0] == ("ledger",)  # a new cgroup is resolved on its first record
    now[0] += 1.5
    labels, attrs, members = cache.workload(7)
    assert labels == ("ledger",) and json.loads("{" + members + "}") == attrs


def test_the_agents_own_connections_are_counted_not_traced() -> None:
    identity = _Identity()
    p, spans, log, reg = _pipeline(identity, own_pid=4242)
    p.handle(_conn(pid=4242))
    p.handle(_conn(pid=43))
    p.flush()
    assert [s.attributes["process.pid"] for s in spans] == [43]
    assert len(log.getvalue().splitlines()) == 1
    assert reg.get_sample_value("bcgov_agent_own_connections_total") == 1.0
    # Only the traced connection leaves an exemplar (the kernel counts both durations).
    ((key, _, ex),) = p.instruments.exemplars.take("bcgov_tcp_connection_duration_seconds", tcp_lifecycle.DURATION_SLOTS)
    assert _duration_labels(identity)(key) == ("active", "normal", "payments") and ex.labels["trace_id"] == spans[0].trace_id_hex


def test_batched_log_writes_at_end_of_batch_only_once_the_oldest_line_is_old_enough(monkeypatch) -> None:
    import agent.export.event_log as event_log

    now = [1000.0]
    monkeypatch.setattr(event_log.time, "monotonic", lambda: now[0])
    buf = io.StringIO()
    log = EventLog(buf, batched=True)
    log.write(0, "first", {})
    now[0] += 0.01
    log.write(0, "second", {})
    log.flush(0.05)
    assert buf.getvalue() == ""  # the oldest is 10 ms old: held
    now[0] += 0.05
    log.flush(0.05)
    assert [json.loads(x)["body"] for x in buf.getvalue().splitlines()] == ["first", "second"]


class _Overlapping(_Identity):
    """An identity that overwrites one of the connection's own keys: no cached tail may be used."""

    def attributes_for(self, cgroup_id: int, pid: int) -> dict[str, Any]:
        return {**super().attributes_for(cgroup_id, pid), "process.executable.name": "from-identity"}


@pytest.mark.parametrize("enricher", [_Identity(), _Overlapping(), Enricher()])
def test_spans_with_the_identitys_cached_json_encode_as_the_dicts_do(enricher: Enricher) -> None:
    p, spans, _, _ = _pipeline(enricher)
    for ev in CONNECTIONS + [_conn(remote_port=5432), _conn(remote_port=5432, direction="passive")]:
        p.handle(ev)
    if isinstance(enricher, _Overlapping):  # overlaps only where the connection has a process name
        assert [s.json_tail_keys == 0 for s in spans] == ["process.pid" in s.attributes for s in spans]
    elif type(enricher) is _Identity:
        assert all(s.json_tail_keys >= 3 for s in spans)  # cgroup id, namespace, pod (+ peer tier)
        assert {s.json_tail_keys for s in spans} == {3, 4}
    resource = {"service.name": "bcgov-agent"}
    for _ in range(2):  # the second time from cached fragments
        assert json.loads(otlp_json_line(spans, resource, "1.2")) == otlp_json_request(spans, resource, "1.2")
