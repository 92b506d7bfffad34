"""A node without kernel headers: /lib/modules/$(uname -r) hidden by a tmpfs in a private mount
namespace (made for this test, gone when the agent exits). The real `bcgov agent run` must fall
back to the bundled generic set (this kernel has no /sys/kernel/kheaders.tar.xz), say so, load
every probe and count a prime number of connections exactly on both ends."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import agent_process
from agent import kernel_headers
from probes import registry
from servers import free_port

pytestmark = pytest.mark.ebpf

REPO = Path(__file__).resolve().parents[2]
HIDE = 'mount -t tmpfs bcgov-no-headers "/lib/modules/$(uname -r)" && exec "$@"'


def _without_node_headers(argv: list[str]) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE, "sh", *argv]


@pytest.fixture(autouse=True)
def _needs_the_bundle() -> None:
    if Path(kernel_headers.KHEADERS).exists():
        pytest.fail("this kernel has /sys/kernel/kheaders.tar.xz: the bundled set is not what would be tested")
    bundle = Path(kernel_headers.BUNDLED_DEFAULT) / "include" / "linux" / "kconfig.h"
    assert bundle.exists(), "no bundled kernel headers: run scripts/bootstrap.sh (it makes them)"


def test_probes_command_names_the_bundled_set_and_every_probe_loads() -> None:
    done = subprocess.run(_without_node_headers([sys.executable, "-m", "bcgov.cli", "agent", "probes", "--json"]),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(done.stdout)
    assert {r["probe"]: r["ready"] for r in rows} == {n: True for n in registry.names()}
    headers = rows[0]["headers"]
    assert headers["source"] == "bundled" and headers["path"] == kernel_headers.BUNDLED_DEFAULT
    assert f"no headers at /lib/modules/{platform.release()}/build" in headers["why"]


def test_agent_runs_and_counts_exactly_on_the_bundled_headers(tmp_path: Path) -> None:
    port = free_port()
    spans = tmp_path / "spans.jsonl"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"metrics_addr: 127.0.0.1:{port}\nspans_file: {spans}\nlog_file: {tmp_path / 'events.jsonl'}\n"
        "identity: false\n"
    )
    stderr = tmp_path / "agent.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            _without_node_headers([sys.executable, "-m", "bcgov.cli", "agent", "run", "--config", str(cfg)]),
            cwd=REPO, stdout=err, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        agent_process.wait_ready(f"http://127.0.0.1:{port}", lambda: proc.poll() is None, stderr.read_text)
        log = stderr.read_text()
        assert f"bundled headers at {kernel_headers.BUNDLED_DEFAULT}" in log, log
        assert "(probes read tracepoint fields only" in log
        agent_process.check_running_agent(f"http://127.0.0.1:{port}", lambda: spans.read_text() if spans.exists() else "")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, stderr.read_text()
        assert "agent stopped after" in stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
