"""The start and exit lines of `bcgov agent run` (bcgov/cli_agent.py) say where events go, what the
span budget is and what was dropped or withheld: the second trial's items 1, 2 and 9."""

from __future__ import annotations

from agent.config import AgentConfig
from agent.export.queue import SpanQueueStats
from bcgov import cli_agent


def test_events_go_where_the_logs_setting_sends_them() -> None:
    dead = "http://bob:pw123@127.0.0.1:1"
    assert cli_agent._events_destination(AgentConfig()) == "stderr"
    assert cli_agent._events_destination(AgentConfig(log_file="/tmp/e.jsonl")) == "/tmp/e.jsonl"
    # auto with an endpoint: both (the trial's start line said only stderr)
    assert cli_agent._events_destination(AgentConfig(otlp_endpoint=dead)) == "stderr and OTLP http://bob:***@127.0.0.1:1"
    # otlp: the file is not written (the trial's start line named it)
    assert cli_agent._events_destination(AgentConfig(otlp_endpoint=dead, logs="otlp", log_file="x.jsonl")) == \
        "OTLP http://bob:***@127.0.0.1:1"
    assert cli_agent._events_destination(AgentConfig(otlp_endpoint=dead, logs="local")) == "stderr"


def test_a_log_file_that_logs_otlp_ignores_is_a_warning() -> None:
    warning = cli_agent._ignored_log_file(AgentConfig(otlp_endpoint="http://c:4317", logs="otlp", log_file="x.jsonl"))
    assert warning and "log_file x.jsonl is ignored" in warning and "logs: both" in warning, warning
    assert cli_agent._ignored_log_file(AgentConfig(otlp_endpoint="http://c:4317", logs="both", log_file="x.jsonl")) is None
    assert cli_agent._ignored_log_file(AgentConfig(otlp_endpoint="http://c:4317", logs="otlp")) is None


def test_dropped_logs_are_named_like_dropped_spans() -> None:
    logs = SpanQueueStats(submitted=50, exported=12, dropped={"export_failed": 38, "queue_full": 0}, queued=0)
    assert cli_agent._dropped("logs", logs, "bcgov_agent_logs_dropped_total") == \
        "; logs dropped: 38 (export_failed 38; bcgov_agent_logs_dropped_total)"
    spans = SpanQueueStats(submitted=80, exported=0, dropped={"export_failed": 71, "shutdown": 9}, queued=0)
    assert cli_agent._dropped("spans", spans, "bcgov_agent_spans_dropped_total") == \
        "; spans dropped: 80 (export_failed 71, shutdown 9; bcgov_agent_spans_dropped_total)"
    assert cli_agent._dropped("logs", None, "m") == ""  # logs not sent over OTLP
    assert cli_agent._dropped("logs", SpanQueueStats(3, 3, {"export_failed": 0}, 0), "m") == ""


def test_the_span_budget_and_what_it_withheld_are_stated() -> None:
    assert cli_agent._span_budget_words(1000.0) == " span budget 1000/s per node (0: every connection a span);"
    assert cli_agent._span_budget_words(2.5) == " span budget 2.5/s per node (0: every connection a span);"
    assert cli_agent._span_budget_words(0.0) == " span budget off (every connection a span);"
    assert cli_agent._span_budget_words(1000.0, 50.0) == \
        " span budget 1000/s per node, 50/s per workload (0: every connection a span);"
    assert cli_agent._span_budget_words(0.0, 50.0) == " span budget none per node, 50/s per workload (0: every connection a span);"
    assert cli_agent._span_budget_words(None) == ""  # no tcp_lifecycle, no spans from connections
    line = cli_agent._withheld(1000.0, 214)
    assert line.startswith("; spans withheld by the span budget: 214 (") and "bcgov_agent_spans_withheld_total" in line
    assert cli_agent._withheld(1000.0, 0) == ""


def test_a_logged_exception_keeps_its_type_message_and_traceback_in_json_mode() -> None:
    # A handler's failure logged with log.exception said only "failed to handle a record" on a
    # non-terminal stderr: the exception itself was dropped by the JSON formatter.
    import json
    import logging
    import sys

    def failing_handler() -> None:
        raise ValueError("boom on SIGUSR1")

    logger = logging.getLogger("bcgov.test.json_formatter")
    try:
        failing_handler()
    except ValueError:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "probe %s: failed to handle a record",
                                   ("signal_generate",), exc_info=sys.exc_info())
    line = cli_agent.JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["body"] == "probe signal_generate: failed to handle a record"
    assert parsed["exception.type"] == "ValueError" and parsed["exception.message"] == "boom on SIGUSR1"
    assert "failing_handler" in parsed["exception.stacktrace"]
    plain = cli_agent.JsonFormatter().format(logger.makeRecord(logger.name, logging.INFO, __file__, 1, "ok", (), None))
    assert json.loads(plain) == {"severity": "INFO", "logger": "bcgov.test.json_formatter", "body": "ok"}
