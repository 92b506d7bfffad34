"""Checks on an agent running as its own process (`bcgov agent run` under unshare, or in a
container): ready, every probe up, a prime number of connections counted on both ends, spans
written, a clean exit on SIGTERM. Shared by tests/agent (no node headers) and tests/deploy (image)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from servers import poll

from probes import registry

N_CONNECTIONS = 23  # prime, as BCC's contributing guide asks: a count that cannot happen by accident
START_TIMEOUT_S = 120.0  # compiling seven probes on a busy 2-core machine
REPO = Path(__file__).resolve().parents[1]


def get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(base_url: str, alive: Callable[[], bool], why_not: Callable[[], str]) -> str:
    """Poll /readyz until 200; fail early with the agent's own output when it exits."""

    def ready() -> str | None:
        if not alive():
            raise AssertionError(f"the agent exited before it was ready:\n{why_not()}")
        try:
            code, body = get(base_url + "/readyz")
        except OSError:
            return None
        return body if code == 200 else None

    return poll(ready, START_TIMEOUT_S, "the agent's /readyz to answer 200", why_not)


@contextlib.contextmanager
def cli_agent(args: list[str], port: int, stderr: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`bcgov agent run ARGS` as its own process (stdout and stderr into `stderr`, unbuffered),
    yielded once its /readyz on 127.0.0.1:`port` answers 200. Leaving the block normally sends
    SIGTERM and requires exit 0; on any failure the process is killed."""
    with stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "bcgov.cli", "agent", "run", *args], cwd=REPO, stdout=err,
                                stderr=err, env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"})
    try:
        wait_ready(f"http://127.0.0.1:{port}", lambda: proc.poll() is None, stderr.read_text)
        yield proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def probes_up(metrics_text: str) -> dict[str, float]:
    """bcgov_agent_probe_up by probe, from the text exposition."""
    return {m[0]: float(m[1]) for m in re.findall(r'^bcgov_agent_probe_up\{probe="([^"]+)"\} (\S+)$', metrics_text, re.M)}


def make_connections(n: int = N_CONNECTIONS) -> int:
    """n loopback connections to a fresh port, each sending and receiving a little; returns the port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]

    def serve() -> None:
        for _ in range(n):
            conn, _ = srv.accept()
            conn.recv(100)
            conn.sendall(b"pong")
            conn.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(b"ping")
                c.recv(100)
    finally:
        t.join(timeout=30)
        srv.close()
    return port


def spans_on_port(jsonl_text: str, port: int) -> list[dict[str, Any]]:
    """Spans whose server.port is `port`, from OTLP JSON lines (complete lines only)."""
    out = []
    for line in jsonl_text.splitlines():
        if not line.endswith("}"):
            continue
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    attrs = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
                    if str(attrs.get("server.port")) == str(port):
                        out.append(span)
    return out


def check_running_agent(base_url: str, read_spans: Callable[[], str]) -> dict[str, Any]:
    """Every probe up, /readyz 200, N_CONNECTIONS counted exactly from both ends in the spans."""
    code, _ = get(base_url + "/readyz")
    assert code == 200
    up = probes_up(get(base_url + "/metrics")[1])
    assert up == {name: 1.0 for name in registry.names()}, up
    port = make_connections()

    def both_ends() -> list[dict[str, Any]] | None:
        spans = spans_on_port(read_spans(), port)
        return spans if len(spans) >= 2 * N_CONNECTIONS else None

    spans = poll(both_ends, 30.0, f"{2 * N_CONNECTIONS} spans for port {port}",
                 lambda: f"{len(spans_on_port(read_spans(), port))} seen")
    kinds = [s["kind"] for s in spans]
    assert kinds.count(3) == N_CONNECTIONS and kinds.count(2) == N_CONNECTIONS, kinds  # CLIENT, SERVER
    return {"port": port, "spans": len(spans)}
