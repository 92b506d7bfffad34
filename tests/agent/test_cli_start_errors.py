"""`bcgov agent run` start-up errors from the trial report: a metrics port already taken is said
before seconds of compiling probes, and a spans_file that cannot be created names the setting.
One line on stderr, exit 2."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from bcgov.cli import cli


def _one_line(result, *needles: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("bcgov: ")]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(lines) == 1, result.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_a_taken_metrics_port_is_said_before_anything_loads(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = CliRunner().invoke(cli, ["agent", "run", "--metrics-addr", f"127.0.0.1:{port}",
                                          "--spans-file", str(tmp_path / "s.jsonl"), "--duration", "1"])
    line = _one_line(result, f"metrics_addr 127.0.0.1:{port}: cannot listen (Address already in use)", "--metrics-addr")
    assert "kernel headers" not in result.stderr and "headers" not in line  # nothing else ran first


@pytest.mark.ebpf
def test_a_spans_file_that_cannot_be_created_names_the_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["agent", "run", "--metrics-addr", "off", "--spans-file", "/proc/nonexistent/x.jsonl",
                                      "--log-file", str(tmp_path / "e.jsonl"), "--probe", "oom", "--duration", "1"])
    _one_line(result, "spans_file /proc/nonexistent/x.jsonl: cannot create /proc/nonexistent: No such file or directory",
              "choose a writable path for spans_file")


@pytest.mark.ebpf
def test_an_identity_error_at_start_is_one_line(tmp_path: Path, monkeypatch) -> None:
    # The runtime builds identity now (Agent.start); its IdentityError still ends the CLI in one line.
    from agent.identity.errors import CgroupRootError
    from agent.identity.pod_enricher import IdentityEnricher

    def for_node(*_: object) -> None:
        raise CgroupRootError("no cgroup2 file system at /sys/fs/cgroup; mount it")

    monkeypatch.setattr(IdentityEnricher, "for_node", staticmethod(for_node))
    result = CliRunner().invoke(cli, ["agent", "run", "--metrics-addr", "off", "--spans-file", str(tmp_path / "s.jsonl"),
                                      "--log-file", str(tmp_path / "e.jsonl"), "--probe", "oom", "--duration", "1"])
    _one_line(result, "bcgov: no cgroup2 file system at /sys/fs/cgroup; mount it")


def _twice() -> tuple:
    import dataclasses

    from probes import registry

    return (*registry.ALL, dataclasses.replace(registry.get("oom"), name="oom2"))


def test_two_probes_declaring_one_family_refuse_the_start_before_anything_loads(tmp_path: Path) -> None:
    from agent.config import AgentConfig
    from agent.runtime import Agent, AgentParts, AgentStartError

    cfg = AgentConfig(metrics_addr="off", spans_file=str(tmp_path / "s.jsonl"), log_file=str(tmp_path / "e.jsonl"),
                      probes=["oom", "oom2"])
    agent = Agent(cfg, tracefs=None, parts=AgentParts(specs=_twice(), enricher=None))  # type: ignore[arg-type]
    with pytest.raises(AgentStartError, match=r"^metric family bcgov_oom_kills declared twice \(oom and oom2\): give one"):
        agent.start()  # no tracefs, no identity: refused before either is used
    assert agent.probes == {} and agent.pipeline is None
    agent.stop()


@pytest.mark.ebpf
def test_two_probes_declaring_one_family_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    from agent import runtime
    from probes import registry

    monkeypatch.setattr(runtime, "AgentParts", functools.partial(runtime.AgentParts, specs=_twice()))
    monkeypatch.setattr(registry, "ALL", _twice())  # so the config knows oom2
    run = ["agent", "run", "--metrics-addr", "off", "--spans-file", str(tmp_path / "s.jsonl"),
           "--log-file", str(tmp_path / "e.jsonl"), "--duration", "1"]
    result = CliRunner().invoke(cli, [*run, "--probe", "oom", "--probe", "oom2"])
    _one_line(result, "bcgov: metric family bcgov_oom_kills declared twice (oom and oom2)")
    # Only the configured probes' families are exported: a twin that is not loaded clashes with nothing.
    alone = CliRunner().invoke(cli, [*run, "--probe", "oom"])
    assert alone.exit_code == 0, alone.output
