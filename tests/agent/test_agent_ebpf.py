"""End to end on the real kernel: real BPF programs, real loopback traffic, real processes and
a real OOM kill, each in a cgroup made for the test so counts can be exact."""

from __future__ import annotations

import json
import re

import pytest
from agent_harness import RunningAgent, wait_for

from probes import tcp_lifecycle

pytestmark = pytest.mark.ebpf

N_CONNECTIONS = 23  # prime, as BCC's contributing guide asks: a count that cannot happen by accident


def _spans_on_port(agent: RunningAgent, port: int, expect: int) -> list[dict]:
    def ready() -> list[dict] | None:
        found = [s for s in agent.spans() if s["attrs"].get("server.port") == port]
        return found if len(found) >= expect else None

    return wait_for(ready, what=f"{expect} spans for server port {port}")


def test_every_probe_loads_on_this_kernel(running_agent: RunningAgent) -> None:
    reports = {r.name: r for r in running_agent.agent.reports}
    assert sorted(reports) == sorted(["tcp_lifecycle", "tcp_retransmit", "tcp_reset", "process", "oom", "block_io", "runqueue"])
    assert all(r.up for r in reports.values()), [r.reason for r in reports.values() if not r.up]
    text = running_agent.scrape()
    for name in reports:
        assert f'bcgov_agent_probe_up{{probe="{name}"}} 1.0' in text


def test_connections_are_counted_exactly_and_spanned_from_both_ends(running_agent: RunningAgent, cgroup) -> None:
    result = cgroup.run("tcp", str(N_CONNECTIONS))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    port = info["port"]

    spans = _spans_on_port(running_agent, port, 2 * N_CONNECTIONS)
    clients = [s for s in spans if s["kind"] == 3]
    servers = [s for s in spans if s["kind"] == 2]
    assert len(clients) == N_CONNECTIONS and len(servers) == N_CONNECTIONS

    def counted(direction: int) -> int:
        return running_agent.kernel_count(
            "tcp_lifecycle", "tcp_connections",
            lambda k: k.cgroup_id == cgroup.id and k.direction == direction and k.outcome == 0,
        )

    assert counted(1) == N_CONNECTIONS
    assert counted(2) == N_CONNECTIONS

    for s in clients:
        a = s["attrs"]
        assert s["name"] == "tcp connect"
        assert a["bcgov.tcp.direction"] == "active" and a["bcgov.tcp.outcome"] == "normal"
        assert a["bcgov.cgroup.id"] == cgroup.id
        assert a["network.peer.port"] == port and a["network.peer.address"] == "127.0.0.1"
        assert a["bcgov.tcp.bytes_sent"] == info["sent"] and a["bcgov.tcp.bytes_received"] == info["received"]
        assert a["process.executable.name"].startswith("python")
        assert s["status"]["code"] == 0
        assert int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"])
    for s in servers:
        a = s["attrs"]
        assert s["name"] == "tcp accept"
        assert a["bcgov.tcp.direction"] == "passive"
        # the accepting side is attributed to the process that read from the socket, not to
        # whatever task ran the softirq
        assert a["bcgov.tcp.owner_source"] == "io"
        assert a["bcgov.cgroup.id"] == cgroup.id
        assert a["bcgov.tcp.bytes_received"] == info["sent"] and a["bcgov.tcp.bytes_sent"] == info["received"]
    pids = {s["attrs"]["process.pid"] for s in spans}
    assert len(pids) == 1  # one workload process made both ends

    # spans carry wall-clock time: within the last minute
    import time

    now = time.time_ns()
    assert all(now - 60e9 < int(s["startTimeUnixNano"]) <= now for s in spans)


def test_refused_connect_is_an_error_span_and_counts_resets(running_agent: RunningAgent, cgroup) -> None:
    result = cgroup.run("refused")
    info = json.loads(result.stdout)
    assert info["refused"]
    (span,) = _spans_on_port(running_agent, info["port"], 1)
    assert span["kind"] == 3
    assert span["status"]["code"] == 2
    assert span["attrs"]["bcgov.tcp.outcome"] == "refused"
    assert span["attrs"]["error.type"] == "connection_refused"
    assert [e["name"] for e in span["events"]] == ["tcp.reset"]
    refused = running_agent.kernel_count(  # counted as the span says: refused, not just "failed"
        "tcp_lifecycle", "tcp_connections",
        lambda k: k.cgroup_id == cgroup.id and tcp_lifecycle.KERNEL_OUTCOMES.get(k.outcome) == "refused",
    )
    assert refused == 1
    text = running_agent.scrape()
    assert re.search(r'bcgov_tcp_resets_total\{direction="sent"\} [1-9]', text)
    assert re.search(r'bcgov_tcp_resets_total\{direction="received"\} [1-9]', text)


def test_reset_connection_marks_both_ends(running_agent: RunningAgent, cgroup) -> None:
    info = json.loads(cgroup.run("reset").stdout)
    assert info["error"] == "ConnectionResetError"
    spans = _spans_on_port(running_agent, info["port"], 2)
    by_kind = {s["kind"]: s for s in spans}
    client, server = by_kind[3], by_kind[2]
    assert client["attrs"]["bcgov.tcp.outcome"] == "reset"
    assert server["attrs"]["bcgov.tcp.outcome"] == "reset"
    assert client["status"]["code"] == 2
    (ev,) = [e for e in client["events"] if e["name"] == "tcp.reset"]
    assert {a["key"]: a["value"]["stringValue"] for a in ev["attributes"]} == {"bcgov.tcp.reset.direction": "received"}
    (ev,) = [e for e in server["events"] if e["name"] == "tcp.reset"]
    assert ev["attributes"][0]["value"]["stringValue"] == "sent"
    assert int(client["startTimeUnixNano"]) <= int(ev["timeUnixNano"]) <= int(server["endTimeUnixNano"])


def test_one_connection_joins_span_log_line_and_exemplar(running_agent: RunningAgent, cgroup) -> None:
    info = json.loads(cgroup.run("hold", "0.3").stdout)
    spans = _spans_on_port(running_agent, info["port"], 2)
    client = next(s for s in spans if s["kind"] == 3)
    trace_id = client["traceId"]

    text = running_agent.scrape(openmetrics=True)
    exemplars = re.findall(
        r'^bcgov_tcp_connection_duration_seconds_bucket\{direction="active",le="([^"]+)",outcome="normal"\} \S+ '
        r'# \{span_id="([0-9a-f]{16})",trace_id="([0-9a-f]{32})"\} (\S+)',
        text, re.M,
    )
    matching = [e for e in exemplars if e[2] == trace_id]
    assert matching, f"no exemplar carries trace_id {trace_id}"
    le, span_id, _, value = matching[0]
    assert span_id == client["spanId"]
    assert 0.3 <= float(value) <= float(le)

    lines = [r for r in running_agent.logs() if r.get("trace_id") == trace_id]
    assert len(lines) == 1
    assert lines[0]["span_id"] == client["spanId"]
    assert lines[0]["attributes"]["network.peer.port"] == info["port"]


def test_process_exec_exit_code_and_redacted_argv(running_agent: RunningAgent, cgroup) -> None:
    secret = "hunter2-s3cr3t"
    argv = ["/bin/sh", "-c", "exit 23", "--password", secret, f"PGPASSWORD={secret}", f"postgres://bob:{secret}@db/x"]
    result = cgroup.run_argv(argv)
    assert result.returncode == 23

    def exit_line() -> dict | None:
        for r in running_agent.logs():
            a = r["attributes"]
            if r["body"] == "process exit" and a.get("bcgov.cgroup.id") == cgroup.id:
                return r
        return None

    line = wait_for(exit_line, what="the exit log line of the workload")
    a = line["attributes"]
    assert a["process.exit.code"] == 23 and a["bcgov.process.exit_kind"] == "exited"
    assert a["bcgov.process.lifetime_seconds"] > 0
    assert line["severity"] == "WARN"

    execs = [r for r in running_agent.logs() if r["body"] == "process exec" and r["attributes"].get("bcgov.cgroup.id") == cgroup.id]
    assert len(execs) == 1
    args = execs[0]["attributes"]["process.command_args"]
    assert args == ["/bin/sh", "-c", "exit 23", "--password", "***", "PGPASSWORD=***", "postgres://bob:***@db/x"]
    assert execs[0]["attributes"]["process.pid"] == a["process.pid"]
    assert running_agent.kernel_count("process", "process_execs", lambda k: k.value == cgroup.id) == 1
    assert secret not in running_agent.log_path.read_text()
    assert secret not in running_agent.spans_path.read_text()


def test_oom_kill_is_seen_with_victim_and_cgroup(running_agent: RunningAgent) -> None:
    from cgroups import test_cgroup

    with test_cgroup(memory_limit_bytes=64 << 20) as cg:
        result = cg.run("oom", "512")
        assert result.returncode == -9

        def oom_line() -> dict | None:
            return next((r for r in running_agent.logs() if r["body"] == "oom kill" and r["attributes"].get("bcgov.cgroup.id") == cg.id), None)

        line = wait_for(oom_line, what="the OOM kill log line")
        assert line["severity"] == "ERROR"
        assert line["attributes"]["process.executable.name"].startswith("python")
        assert line["attributes"]["bcgov.oom.anon_rss_kb"] > 32 * 1024
        assert running_agent.kernel_count("oom", "oom_kills", lambda k: k.value == cg.id) == 1
        exit_ = wait_for(
            lambda: next((r for r in running_agent.logs() if r["body"] == "process exit" and r["attributes"].get("bcgov.cgroup.id") == cg.id), None),
            what="the OOM victim's exit line",
        )
        assert exit_["attributes"]["bcgov.process.exit_kind"] == "signaled"
        assert exit_["attributes"]["bcgov.process.signal"] == 9
        assert exit_["attributes"]["process.pid"] == line["attributes"]["process.pid"]
    assert re.search(r"^bcgov_oom_kills_total [1-9]", running_agent.scrape(), re.M)


def test_lost_records_are_exported_and_zero_under_normal_load(running_agent: RunningAgent) -> None:
    text = running_agent.scrape()
    for probe in ("tcp_lifecycle", "process", "oom"):
        assert f'bcgov_agent_events_lost_total{{probe="{probe}"}} 0.0' in text
        assert re.search(rf'bcgov_agent_events_total\{{probe="{probe}"\}} \S+', text)
    for probe in ("tcp_lifecycle", "process"):
        m = re.search(rf'bcgov_agent_events_total\{{probe="{probe}"\}} (\S+)', text)
        assert m and float(m.group(1)) > 0, probe
    # with nothing lost, received == emitted, the kernel's own count
    p = running_agent.agent.probes["tcp_lifecycle"]
    assert p.stat(1) == 0
    wait_for(lambda: running_agent.agent.instruments.received_count("tcp_lifecycle") == p.stat(0),
             what="every emitted tcp record to be received")


def test_scrape_exposes_the_core_metric_names(running_agent: RunningAgent) -> None:
    text = running_agent.scrape(openmetrics=False)
    for name in (
        "bcgov_tcp_connections_total", "bcgov_tcp_connection_duration_seconds_bucket", "bcgov_tcp_retransmits",
        "bcgov_tcp_resets_total", "bcgov_process_execs_total", "bcgov_oom_kills",
        "bcgov_agent_probe_up", "bcgov_agent_events_total", "bcgov_agent_events_lost_total",
    ):
        assert name in text, name
