"""The span queue with the real OTLP exporters and the stand-in collector (no eBPF needed):
exact accounting when the collector is down, a bounded shutdown, recovery when it returns."""

from __future__ import annotations

import threading

import pytest
from agent_harness import wait_for
from otlp_receiver import OtlpReceiver

from agent.export.queue import SpanQueue
from agent.export.span_model import KIND_CLIENT, SpanData
from agent.export.spans import OtlpExporter


def _span(i: int) -> SpanData:
    return SpanData(i + 1, i + 1, "tcp connect", KIND_CLIENT, 1_000 + i, 2_000 + i, {"bcgov.test.index": i})


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_dead_collector_drops_are_exact_shutdown_is_bounded_and_export_recovers(protocol: str) -> None:
    receiver = OtlpReceiver(protocol)
    receiver.start()
    drops: dict[str, int] = {}
    lock = threading.Lock()

    def on_drop(reason: str, n: int) -> None:
        with lock:
            drops[reason] = drops.get(reason, 0) + n

    exporter = OtlpExporter(receiver.endpoint, protocol, {"service.name": "bcgov-agent"}, "test", timeout_s=1.0)
    q = SpanQueue(exporter, on_drop, max_queue=8, max_batch=4, interval_s=0.05, flush_timeout_s=1.0)
    stopper = threading.Thread(target=q.shutdown)
    try:
        for i in range(4):
            q.submit(_span(i))
        wait_for(lambda: q.stats().exported == 4, what="4 spans exported")
        assert sorted(s.attributes["bcgov.test.index"] for s in receiver.spans()) == [0, 1, 2, 3]

        receiver.stop()
        for i in range(4, 24):  # 20 more: the queue holds 8, one batch of 4 can be in flight
            q.submit(_span(i))
        st = q.stats()
        assert st.submitted == 24 and st.submitted == st.exported + st.dropped_total + st.queued
        assert st.dropped.get("queue_full", 0) >= 20 - 8 - 4
        wait_for(lambda: q.stats().dropped.get("export_failed", 0) > 0, what="a failed export")
        st = q.stats()
        assert st.submitted == st.exported + st.dropped_total + st.queued
        assert st.dropped == drops  # the callback saw the same counts

        receiver.start()  # same port
        wait_for(lambda: q.stats().queued == 0, timeout=30, what="the queue to drain")
        q.submit(_span(99))
        wait_for(lambda: any(s.attributes["bcgov.test.index"] == 99 for s in receiver.spans()), timeout=30,
                 what="a span after the collector came back")

        receiver.stop()
        for i in range(100, 108):
            q.submit(_span(i))
        stopper.start()
        wait_for(lambda: not stopper.is_alive(), timeout=30, what="shutdown() to return with the collector down")
        st = q.stats()
        assert st.queued == 0 and st.submitted == 33
        assert st.submitted == st.exported + st.dropped_total
        received = {s.attributes["bcgov.test.index"] for s in receiver.spans()}
        assert not received & set(range(100, 108))
    finally:
        if stopper.ident is None:  # failed before the shutdown step
            q.shutdown()
        receiver.stop()


@pytest.mark.parametrize("form", ["{host}:{port}", "http://{host}:{port}"])
def test_grpc_plaintext_for_bare_and_http_endpoints(form: str) -> None:
    # The SDK defaults to TLS for a bare host:port; a collector on the node or in-cluster speaks
    # plaintext unless the endpoint says https://.
    receiver = OtlpReceiver("grpc")
    receiver.start()
    try:
        ex = OtlpExporter(form.format(host="127.0.0.1", port=receiver.port), "grpc", {"service.name": "x"}, "test", timeout_s=2.0)
        assert ex.export([_span(7)])
        ex.shutdown()
        assert [s.attributes["bcgov.test.index"] for s in receiver.spans()] == [7]
    finally:
        receiver.stop()
    with pytest.raises(ValueError, match="use 'grpc' or 'http'"):
        OtlpExporter("x:1", "thrift", {}, "test")
