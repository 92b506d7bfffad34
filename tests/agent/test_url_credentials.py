"""Credentials in URLs the user passes never reach a log line or a report in clear text
(agent/redaction/url_credentials.py), and an OTLP endpoint with userinfo works: the stand-in collector
(tests/agent/otlp_receiver.py, the real opentelemetry-proto services over grpcio and HTTP) gets
them as an Authorization: Basic header."""

from __future__ import annotations

import base64
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_harness import wait_for
from otlp_receiver import OtlpReceiver
from servers import free_port

from agent.redaction.url_credentials import CleartextCredentials, display_url, split_userinfo

SECRET = "S3cret"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("url,shown", [
    ("http://user:S3cret@127.0.0.1:4317", "http://user:***@127.0.0.1:4317"),
    ("https://S3cret@collector.example:4318/v1/traces", "https://***@collector.example:4318/v1/traces"),
    ("https://h/path?sig=S3cret&sv=1", "https://h/path?sig=***&sv=1"),
    ("cannot reach scrape target at http://u:S3cret@h:9100/metrics (refused)",
     "cannot reach scrape target at http://u:***@h:9100/metrics (refused)"),
    ("http://prometheus:9090", "http://prometheus:9090"),
    ("collector:4317", "collector:4317"),
])
def test_display_url_masks_userinfo_and_signatures_only(url: str, shown: str) -> None:
    assert display_url(url) == shown


@pytest.mark.parametrize("url,clean,userpass", [
    ("http://user:S3cret@127.0.0.1:4317", "http://127.0.0.1:4317", "user:S3cret"),
    ("user:S3cret@[::1]:4317", "http://[::1]:4317", "user:S3cret"),
    ("https://S3cret@collector.example:4318/v1/traces", "https://collector.example:4318/v1/traces", "S3cret:"),
    ("https://a%40b:p%3Aw@c.example/", "https://c.example/", "a@b:p:w"),  # percent-encoded per RFC 3986
])
def test_userinfo_becomes_a_basic_authorization_header(url: str, clean: str, userpass: str) -> None:
    ep = split_userinfo(url)
    assert ep.url == clean
    assert ep.headers == {"authorization": "Basic " + base64.b64encode(userpass.encode()).decode()}


def test_a_url_without_userinfo_is_left_alone() -> None:
    assert split_userinfo("collector:4317").url == "collector:4317" and not split_userinfo("collector:4317").headers
    assert split_userinfo("http://c:4318/x@y").url == "http://c:4318/x@y"  # an @ in the path is no userinfo


def test_credentials_are_not_sent_unencrypted_off_the_node() -> None:
    with pytest.raises(CleartextCredentials) as exc:
        split_userinfo("http://user:S3cret@collector.example:4317")
    msg = str(exc.value)
    assert SECRET not in msg and "otlp_endpoint" in msg and "https://" in msg and "\n" not in msg


def _with_userinfo(endpoint: str) -> str:
    return endpoint.replace("http://", f"http://user:{SECRET}@")


def test_spans_and_logs_reach_a_collector_addressed_with_userinfo(receiver: OtlpReceiver) -> None:
    from agent.export.otlp_logs import OtlpLogExporter
    from agent.export.span_model import KIND_CLIENT, SpanData
    from agent.export.spans import OtlpExporter

    endpoint = _with_userinfo(receiver.endpoint)
    spans = OtlpExporter(endpoint, receiver.protocol, {"service.name": "t"}, "0.1.0", 2.0)
    try:
        assert spans.export([SpanData(trace_id=1, span_id=2, name="tcp connect", kind=KIND_CLIENT, start_ns=1,
                                      end_ns=2, attributes={})])
    finally:
        spans.shutdown()
    want = "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert [s.name for s in receiver.spans()] == ["tcp connect"]
    assert receiver.authorization == [want]
    logs = OtlpLogExporter(endpoint, receiver.protocol, {"service.name": "t"}, "0.1.0", 2.0)
    logs.shutdown()  # built with the same split (a request needs LogLines; the spans path proved the wire)


def test_the_sdk_never_logs_the_credentials_of_an_unreachable_collector(caplog: pytest.LogCaptureFixture) -> None:
    """Before: 'Transient error StatusCode.UNAVAILABLE encountered while exporting traces to
    user:S3cret@127.0.0.1:1 ... Misformatted domain name' (the trial report), six times."""
    from agent.export.span_model import KIND_CLIENT, SpanData
    from agent.export.spans import OtlpExporter

    caplog.set_level(logging.DEBUG)
    exp = OtlpExporter(f"http://user:{SECRET}@127.0.0.1:{free_port()}", "grpc", {"service.name": "t"}, "0.1.0", 1.5)
    try:
        ok = exp.export([SpanData(trace_id=1, span_id=2, name="tcp connect", kind=KIND_CLIENT, start_ns=1, end_ns=2,
                                  attributes={})])
    finally:
        exp.shutdown()
    assert not ok
    assert caplog.records, "the SDK said nothing about the failed export: this test would prove nothing"
    assert SECRET not in caplog.text and "Misformatted" not in caplog.text


@pytest.mark.ebpf
def test_the_agent_start_up_line_shows_the_endpoint_masked(tmp_path: Path) -> None:
    """A real agent run (tcp_lifecycle on this kernel) with --otlp-endpoint carrying a password:
    nothing it prints holds the password, and the collector receives spans with the header."""
    if os.geteuid() != 0:
        pytest.skip("needs root to load BPF programs")
    receiver = OtlpReceiver("grpc")
    receiver.start()
    listener = socket.create_server(("127.0.0.1", 0))
    config = tmp_path / "agent.yaml"
    config.write_text("span_budget_per_second: 0\n")  # other traffic must not spend the budget first
    agent = None
    try:
        agent = subprocess.Popen(
            [str(Path(sys.executable).parent / "bcgov"), "agent", "run", "--probe", "tcp_lifecycle", "--duration", "4",
             "--metrics-addr", f"127.0.0.1:{free_port()}", "--otlp-endpoint", _with_userinfo(receiver.endpoint),
             "--log-file", str(tmp_path / "events.jsonl"), "--config", str(config)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Connections of our own while it runs, so a span is exported whatever else the machine does
        # (the agent compiles first, so keep connecting until it exits).
        while agent.poll() is None:
            with socket.create_connection(listener.getsockname(), timeout=5):
                listener.accept()[0].close()
            time.sleep(0.05)
        stdout, stderr = agent.communicate(timeout=300)
        proc = subprocess.CompletedProcess(agent.args, agent.returncode, stdout, stderr)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-2000:]
        assert "agent running" in out and f"spans -> http://user:***@127.0.0.1:{receiver.port}" in out
        assert SECRET not in out
        wait_for(lambda: receiver.requests > 0, 10, "a span export at the stand-in collector")
        assert set(receiver.authorization) == {"Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()}
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.communicate()
        listener.close()
        receiver.stop()


def test_the_agent_refuses_credentials_over_plain_http_to_another_host_in_one_line(tmp_path: Path) -> None:
    """Checked with the configuration, before any probe is compiled: no BPF, no root needed."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "bcgov"), "agent", "run", "--duration", "1",
         "--otlp-endpoint", f"http://user:{SECRET}@collector.example:4317", "--log-file", str(tmp_path / "e.jsonl")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bcgov: config: otlp_endpoint http://user:***@collector.example:4317"), proc.stderr
    assert "https://" in err[0] and SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize("headers,endpoint,message", [
    ({"authorization": f"Bearer {SECRET}"}, "http://collector.example:4317", "would cross the network in clear text"),
    ({"X-Api-Key": SECRET}, "http://10.0.0.7:4318", "would cross the network in clear text"),
    ({"bad name": "x"}, "http://c:4317", "is not an HTTP header name"),
    ({"a": f"x\n{SECRET}"}, "http://c:4317", "must be a one-line string (value not shown)"),
    ({"a": 5}, "http://c:4317", "must be a one-line string"),
    ({"a": "b", "A": "c"}, "http://c:4317", "is given twice"),
    ({"a": "b"}, None, "needs otlp_endpoint"),
    (["authorization"], "http://c:4317", "must be a mapping"),
    ({"authorization": f"Bearer {SECRET}"}, f"https://u:{SECRET}@c:4317", "keep one"),
])
def test_bad_otlp_headers_are_one_line_errors_without_the_value(headers: object, endpoint: str | None, message: str) -> None:
    from agent.config import AgentConfig, ConfigError

    with pytest.raises(ConfigError) as exc:
        AgentConfig(otlp_endpoint=endpoint, otlp_headers=headers).validate("agent.yaml")  # type: ignore[arg-type]
    text = str(exc.value)
    assert text.startswith("agent.yaml: ") and message in text and "\n" not in text and SECRET not in text


def test_otlp_headers_from_a_config_file_reach_the_collector(receiver: OtlpReceiver, tmp_path: Path) -> None:
    """A tenant header to any host, an authorization header to loopback: both arrive, names
    lower-cased (gRPC metadata), and the endpoint's own userinfo adds nothing when absent."""
    from agent import config
    from agent.export.span_model import KIND_CLIENT, SpanData
    from agent.export.spans import OtlpExporter

    f = tmp_path / "agent.yaml"
    f.write_text(f"otlp_endpoint: {receiver.endpoint}\notlp_protocol: {receiver.protocol}\n"
                 f"otlp_headers: {{Authorization: 'Bearer {SECRET}', X-Scope-OrgID: tenant-1}}\n")
    cfg = config.load(str(f), {})
    assert cfg.otlp_headers == {"authorization": f"Bearer {SECRET}", "x-scope-orgid": "tenant-1"}
    exp = OtlpExporter(cfg.otlp_endpoint, cfg.otlp_protocol, {"service.name": "t"}, "0.1.0", 2.0, cfg.otlp_headers)
    try:
        assert exp.export([SpanData(trace_id=1, span_id=2, name="tcp connect", kind=KIND_CLIENT, start_ns=1, end_ns=2,
                                    attributes={})])
    finally:
        exp.shutdown()
    assert receiver.authorization == [f"Bearer {SECRET}"]


@pytest.mark.ebpf
def test_a_real_agent_sends_otlp_headers_from_its_config_with_spans_and_logs(tmp_path: Path) -> None:
    """The runtime hands otlp_headers to both OTLP exporters (spans, and event lines as logs);
    nothing the agent prints holds the header's value. Traffic: loopback connections made once
    the agent says it runs."""
    import signal
    import socket

    if os.geteuid() != 0:
        pytest.skip("needs root to load BPF programs")
    receiver = OtlpReceiver("http")
    receiver.start()
    listener = socket.create_server(("127.0.0.1", 0))
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"otlp_endpoint: {receiver.endpoint}\notlp_protocol: http\n"
                   f"otlp_headers: {{Authorization: 'Bearer {SECRET}'}}\nspan_budget_per_second: 0\n")
    err_path = tmp_path / "agent.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "bcgov"), "agent", "run", "--config", str(cfg), "--probe", "tcp_lifecycle",
             "--duration", "120", "--metrics-addr", f"127.0.0.1:{free_port()}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        wait_for(lambda: "agent running" in err_path.read_text() or proc.poll() is not None, 240, "the agent to start")
        assert proc.poll() is None, err_path.read_text()[-2000:]
        for _ in range(3):
            with socket.create_connection(listener.getsockname()):
                listener.accept()[0].close()
        wait_for(lambda: receiver.requests > 0 and receiver.log_requests > 0, 30, "span and log exports")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        listener.close()
        receiver.stop()
    assert set(receiver.authorization) == {f"Bearer {SECRET}"}
    assert SECRET not in err_path.read_text()
