"""RingBufferReader.stop: a reader still busy with a backlog must not be left polling a ring buffer
that the agent frees right after (that crashed the agent at stop under load)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from agent_harness import wait_for
from prometheus_client import CollectorRegistry

from agent.identity.enricher import Enricher
from agent.kernel import loader, preflight
from agent.kernel.readers import RingBufferReader
from agent.kernel.tracefs import Tracefs
from agent.metrics.instruments import Instruments
from probes import registry

pytestmark = pytest.mark.ebpf

N_CONNECTIONS = 5  # each gives two records (both ends), all waiting behind the first


@pytest.fixture
def probe() -> Iterator[loader.LoadedProbe]:
    loaded = loader.load(loader.plan(registry.get("tcp_lifecycle"), Tracefs(preflight.check())))
    try:
        yield loaded
    finally:
        loaded.close()


def _loopback_connections(n: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        for _ in range(n):
            c = socket.create_connection(srv.getsockname())
            conn, _ = srv.accept()
            c.close()
            conn.close()


def test_stop_past_its_timeout_discards_the_backlog_and_returns_only_when_the_thread_is_done(
    probe: loader.LoadedProbe,
) -> None:
    release, entered = threading.Event(), threading.Event()
    handled: list[object] = []

    def slow_handler(event: object) -> None:
        handled.append(event)
        entered.set()
        release.wait(30)  # the first record blocks the reader, like a long backlog would

    reader = RingBufferReader(probe, slow_handler, Instruments(CollectorRegistry(), Enricher()))
    before = set(threading.enumerate())
    reader.start()
    # Other agents in this session have readers of the same name: take the one that just started.
    (reader_thread,) = [t for t in set(threading.enumerate()) - before if t.name == "bcgov-read-tcp_lifecycle"]
    stopper = threading.Thread(target=reader.stop, kwargs={"timeout_s": 0.2})
    try:
        _loopback_connections(N_CONNECTIONS)
        assert entered.wait(30), "no record reached the reader"
        probe.detach()
        stopper.start()
        wait_for(lambda: reader._discard, what="stop() to give up draining after its timeout")
        assert stopper.is_alive(), "stop() returned while the reader thread was still inside a poll"
    finally:
        release.set()
    stopper.join(30)
    assert not stopper.is_alive()
    assert not reader_thread.is_alive()  # stop() returned only after the reader thread ended
    assert len(handled) == 1  # the backlog behind the blocked record was discarded, not handled
