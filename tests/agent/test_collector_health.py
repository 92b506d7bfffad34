"""agent/export/collector_health.py: one line when the collector stops taking exports, one when it takes
them again (the trial saw 19 OTel SDK lines in 25 s and no agent line), and the SDK's own retry
lines held to one per logger and interval."""

from __future__ import annotations

import logging

import pytest

from agent.export.collector_health import CollectorHealth, SdkLineLimiter


def test_many_failures_make_one_line_and_a_success_one_more(caplog: pytest.LogCaptureFixture) -> None:
    health = CollectorHealth("http://alice:S3cretPW@collector:4318")
    with caplog.at_level(logging.INFO, logger="bcgov.agent"):
        for _ in range(20):
            health.failed("spans", 512)
            health.failed("logs", 7)
        assert health.down
        health.exported("logs", 3)
        health.exported("spans", 9)
        health.failed("spans", 1)  # down again: a new outage, a new line
    lines = [r.getMessage() for r in caplog.records if r.name == "bcgov.agent"]
    assert len(lines) == 3, lines
    down, up, again = lines
    assert "unreachable" in down and "512 spans not sent" in down, down
    assert "bcgov_agent_spans_dropped_total" in down and "bcgov_agent_logs_dropped_total" in down, down
    assert "reachable again" in up and "3 logs sent" in up, up
    assert "unreachable" in again
    for line in lines:  # the endpoint is named, its password never
        assert "alice:***@collector:4318" in line and "S3cretPW" not in line, line


def test_a_healthy_collector_makes_no_line(caplog: pytest.LogCaptureFixture) -> None:
    health = CollectorHealth("http://127.0.0.1:4317")
    with caplog.at_level(logging.INFO, logger="bcgov.agent"):
        for _ in range(5):
            health.exported("spans", 10)
    assert not [r for r in caplog.records if r.name == "bcgov.agent"]


def _record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)


def test_sdk_lines_pass_once_per_logger_and_interval_then_name_what_was_held() -> None:
    limiter = SdkLineLimiter(interval_s=3600)
    grpc_name = "opentelemetry.exporter.otlp.proto.grpc.exporter"
    http_name = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    passed = [limiter.filter(_record(grpc_name, f"Transient error StatusCode.UNAVAILABLE, retrying in {i}s."))
              for i in range(19)]
    assert passed == [True] + [False] * 18
    assert limiter.filter(_record(http_name, "Failed to export span batch"))  # another logger: its own first line
    assert all(limiter.filter(_record("bcgov.agent", "agent line")) for _ in range(5))  # ours are never held

    limiter._last[grpc_name] -= 3601  # the interval has passed
    later = _record(grpc_name, "Transient error, retrying.")
    assert limiter.filter(later)
    assert "18 similar lines held back" in later.getMessage(), later.getMessage()
