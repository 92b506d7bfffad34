"""The reader's failures (agent/kernel/readers.py), without a kernel: a stand-in ring buffer hands
records to the reader's callback. Each failure is counted; the first ten are logged with their
traceback and say whether decoding or handling failed, then one line says the rest are only counted."""

from __future__ import annotations

import ctypes
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from agent.kernel.readers import MAX_ERRORS_LOGGED, RingBufferReader


class _Counters:
    def __init__(self) -> None:
        self.received_n = 0
        self.errors: dict[str, int] = {}
        outer = self

        class _Labelled:
            def __init__(self, probe: str) -> None:
                self.probe = probe

            def inc(self) -> None:
                outer.errors[self.probe] = outer.errors.get(self.probe, 0) + 1

        self.handler_errors = SimpleNamespace(labels=_Labelled)

    def received(self, probe: str, n: int = 1) -> None:
        self.received_n += n


def _reader(decode: Any, handle: Any, counters: _Counters) -> tuple[RingBufferReader, list[Any]]:
    callbacks: list[Any] = []
    ring = SimpleNamespace(open_ring_buffer=callbacks.append)
    spec = SimpleNamespace(name="demo", ring_buffer="events", decoder=decode)
    probe = SimpleNamespace(plan=SimpleNamespace(spec=spec), bpf={"events": ring}, name="demo")
    return RingBufferReader(probe, handle, counters), callbacks  # type: ignore[arg-type]


def _send(callback: Any, payload: bytes) -> None:
    buf = ctypes.create_string_buffer(payload, len(payload))
    callback(None, ctypes.addressof(buf), len(payload))


def _bad_decode(raw: bytes) -> object:
    raise ValueError("short record")


def _bad_handle(event: object) -> None:
    raise RuntimeError("handler bug")


@pytest.mark.parametrize("decode, handle, step", [
    (_bad_decode, lambda e: None, "decode"),
    (lambda raw: raw, _bad_handle, "handle"),
])
def test_a_failure_names_its_step_and_is_counted(decode: Any, handle: Any, step: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    counters = _Counters()
    _, (callback,) = _reader(decode, handle, counters)
    with caplog.at_level(logging.ERROR, logger="bcgov.agent.kernel.readers"):
        _send(callback, b"12345678")
    assert counters.errors == {"demo": 1} and counters.received_n == 1
    (record,) = caplog.records
    assert record.getMessage() == f"probe demo: failed to {step} a record (8 bytes)"
    assert record.exc_info is not None


def test_after_ten_failures_one_line_says_the_rest_are_only_counted(caplog: pytest.LogCaptureFixture) -> None:
    counters = _Counters()
    _, (callback,) = _reader(_bad_decode, lambda e: None, counters)
    with caplog.at_level(logging.ERROR, logger="bcgov.agent.kernel.readers"):
        for _ in range(MAX_ERRORS_LOGGED + 15):
            _send(callback, b"x")
    assert counters.errors == {"demo": MAX_ERRORS_LOGGED + 15}
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:MAX_ERRORS_LOGGED] == ["probe demo: failed to decode a record (1 bytes)"] * MAX_ERRORS_LOGGED
    assert messages[MAX_ERRORS_LOGGED:] == [
        f"probe demo: {MAX_ERRORS_LOGGED} failures logged; further ones are only counted in "
        'bcgov_agent_handler_errors_total{probe="demo"}']
