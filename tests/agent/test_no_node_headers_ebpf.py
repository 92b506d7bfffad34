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

import agent_process
import pytest
from servers import free_port

from agent.kernel import headers as kernel_headers
from probes import registry

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
        # budget off: another load on this shared machine (a storm bench) must not spend the span
        # budget and withhold the test's own connections (as in tests/realstack.py)
        "identity: false\nspan_budget_per_second: 0\n"
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


# The trial report's segfault (exit 139): a node tree BCC cannot compile from. Made in a private
# mount namespace: a tmpfs over /lib/modules/$(uname -r) with build/ linked to Debian's -amd64 half
# only (kconfig.h lives in the -common half), or a tmpfs over the -common half itself.
HALF_LINKED = 'R=$(uname -r); A="$1"; shift; mount -t tmpfs bcgov-half-headers "/lib/modules/$R" ' \
              '&& ln -s "$A" "/lib/modules/$R/build" && exec "$@"'
COMMON_HIDDEN = 'C="$1"; shift; mount -t tmpfs bcgov-hidden-common "$C" && exec "$@"'


def _debian_half(suffix: str) -> str:
    found = sorted(Path("/usr/src").glob(f"linux-headers-*-{suffix}"))
    assert found, f"no /usr/src/linux-headers-*-{suffix}: run scripts/bootstrap.sh"
    return str(found[-1])


def _probes_json(script: str, arg: str, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", arg,
            sys.executable, "-m", "bcgov.cli", "agent", "probes", "--json", *extra]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"rc={done.returncode}\n{done.stdout}\n{done.stderr}"
    return done, json.loads(done.stdout)


@pytest.mark.parametrize("no_load", [True, False], ids=["no-load", "load"])
def test_build_linked_without_source_falls_back_to_the_bundle(no_load: bool) -> None:
    _, rows = _probes_json(HALF_LINKED, _debian_half("amd64"), *(["--no-load"] if no_load else []))
    assert {r["probe"]: r["ready"] for r in rows} == {n: True for n in registry.names()}
    headers = rows[0]["headers"]
    assert (headers["source"], headers["path"]) == ("bundled", kernel_headers.BUNDLED_DEFAULT)
    assert headers["why"].startswith(f"node headers at /lib/modules/{platform.release()}/build are incomplete: "
                                     "no include/linux/kconfig.h under build/"), headers["why"]


def test_agent_runs_when_the_common_half_is_hidden(tmp_path: Path) -> None:
    port = free_port()
    spans = tmp_path / "spans.jsonl"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"metrics_addr: 127.0.0.1:{port}\nspans_file: {spans}\nlog_file: {tmp_path / 'events.jsonl'}\n"
                   "identity: false\nduration: 1\n")
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", COMMON_HIDDEN, "sh", _debian_half("common"),
            sys.executable, "-m", "bcgov.cli", "agent", "run", "--config", str(cfg)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"rc={done.returncode}\n{done.stderr}"
    assert "are incomplete: no include/linux/kconfig.h under source/" in done.stderr, done.stderr
    assert f"bundled headers at {kernel_headers.BUNDLED_DEFAULT}" in done.stderr
    assert "agent stopped after" in done.stderr
