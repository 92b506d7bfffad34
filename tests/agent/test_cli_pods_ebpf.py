"""`bcgov agent run --kubeconfig --node-name`: the CLI lists this node's pods from the API before
its probes start, and starts anyway (saying why) when the API does not answer. The API is a
STAND-IN kube-apiserver (see identity/identity_standin_apiserver.py): none can run here."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bcgov import cli_agent
from bcgov.cli import cli

sys.path.insert(0, str(Path(__file__).parent / "identity"))
from identity_standin_apiserver import StandInAPIServer, make_self_signed_cert, write_kubeconfig  # noqa: E402

pytestmark = pytest.mark.ebpf


@pytest.fixture
def certs(tmp_path: Path) -> tuple[str, str]:
    return make_self_signed_cert(str(tmp_path))


def _run(tmp_path: Path, kubeconfig: str) -> str:
    result = CliRunner().invoke(cli, [
        "agent", "run", "--duration", "1", "--metrics-addr", "off", "--probe", "process",
        "--spans-file", str(tmp_path / "spans.jsonl"), "--log-file", str(tmp_path / "events.jsonl"),
        "--kubeconfig", kubeconfig, "--node-name", "node-cli",
    ])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def standin(certs: tuple[str, str], tmp_path: Path) -> Iterator[tuple[StandInAPIServer, str]]:
    server = StandInAPIServer({"metadata": {"resourceVersion": "1"}, "items": []}, {})
    kubeconfig = str(tmp_path / "kubeconfig")
    write_kubeconfig(kubeconfig, server.start(*certs), certs[0])
    try:
        yield server, kubeconfig
    finally:
        server.stop()


def test_run_lists_the_nodes_pods_before_starting(standin, tmp_path: Path) -> None:
    server, kubeconfig = standin
    out = _run(tmp_path, kubeconfig)
    assert server.list_calls == 1
    # No warning: the wait before the agent starts ended with the list applied (the next test
    # shows the warning when it does not).
    assert "no pod list" not in out and "agent stopped after" in out


def test_run_starts_without_the_pod_list_when_the_api_is_down(certs, tmp_path: Path, monkeypatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: refused
        kubeconfig = str(tmp_path / "kubeconfig")
        write_kubeconfig(kubeconfig, dead, certs[0])
        monkeypatch.setattr(cli_agent, "POD_LIST_WAIT_S", 0.5)
        out = _run(tmp_path, kubeconfig)
    assert "no pod list from the Kubernetes API within 0.5s; starting anyway" in out
    assert "agent stopped after" in out
