"""The peer side of the storm: BCC's own `tcplife-bpfcc` (Debian's bpfcc-tools) on the same load.

tcplife traces the same tracepoint (sock:inet_sock_set_state) and prints one line per closed TCP
session (both ends of a loopback connection: two lines), from a perf buffer read by Python. It is
the nearest installed tool that does a part of what the agent does (no span, no log line with
identity, no exemplar, no in-kernel counts), so "as cheap as the peer" is the floor to beat.

One tcplife process per load window (its output goes to a file, block-buffered as on a terminal
pipe, and is counted after it exits, so the count of one window never mixes with the next).
Measured like the agent: CPU from /proc/<pid>/stat over the window plus the time it needs to
catch up afterwards, RSS from /proc/<pid>/status. Records lost = the load's connection ends
(2 per connection) minus tcplife's lines for the server's port; `lost_reported` is what BCC printed
("Possibly lost N samples"), which ENVIRONMENT.md found undercounts.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.agent_proc import cpu_seconds, memory_kb
from bench.common import BenchError, wait_until

TCPLIFE = "tcplife-bpfcc"
_LOST = re.compile(rb"Possibly lost (\d+) samples")


def perf_event_fds(pid: int) -> int:
    """Open perf_event fds of a process: its tracepoint attachment plus one per CPU per perf buffer."""
    n = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(fd_dir / fd) == "anon_inode:[perf_event]":
                n += 1
        except OSError:  # closed meanwhile
            continue
    return n


def count_lines(text: str, port: int) -> int:
    """tcplife lines (PID COMM LADDR LPORT RADDR RPORT TX_KB RX_KB MS) with `port` at either end."""
    want = str(port)
    n = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 9 and (parts[-6] == want or parts[-4] == want):
            n += 1
    return n


def reported_lost(stderr: bytes) -> int:
    """Sum of BCC's "Possibly lost N samples" lines."""
    return sum(int(m) for m in _LOST.findall(stderr))


@dataclass
class PeerProcess:
    """A running tcplife-bpfcc writing to files in `workdir`."""

    proc: subprocess.Popen[bytes]
    workdir: Path
    started_s: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    def snapshot(self) -> dict[str, Any]:
        return {"t": time.monotonic(), "cpu_s": cpu_seconds(self.pid), **memory_kb(self.pid)}

    def caught_up(self, idle_cores: float = 0.05, timeout: float = 20.0) -> dict[str, Any]:
        """Snapshot once tcplife's CPU use has fallen below `idle_cores` (it has printed its backlog)."""
        prev = self.snapshot()
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(0.3)
            snap = self.snapshot()
            rate = (snap["cpu_s"] - prev["cpu_s"]) / (snap["t"] - prev["t"])
            if rate < idle_cores or time.monotonic() > deadline:
                snap["drained"] = rate < idle_cores
                return snap
            prev = snap

    def stop(self) -> tuple[str, bytes]:
        """SIGINT (tcplife exits and flushes on KeyboardInterrupt); its stdout text and stderr bytes."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        out = (self.workdir / "tcplife.out").read_text(errors="replace")
        err = (self.workdir / "tcplife.err").read_bytes()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return out, err


def start_peer() -> PeerProcess:
    """Start tcplife-bpfcc; return once its tracepoint and both perf buffers are open."""
    exe = shutil.which(TCPLIFE) or (f"/usr/sbin/{TCPLIFE}" if Path(f"/usr/sbin/{TCPLIFE}").exists() else None)
    if exe is None:
        raise BenchError(f"{TCPLIFE} not found: install Debian's bpfcc-tools (scripts/bootstrap.sh does)")
    workdir = Path(tempfile.mkdtemp(prefix="bcgov-bench-peer-"))
    t0 = time.monotonic()
    with open(workdir / "tcplife.out", "wb") as out, open(workdir / "tcplife.err", "wb") as err:
        proc = subprocess.Popen([exe], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    peer = PeerProcess(proc, workdir, 0.0)
    want = 1 + 2 * (os.cpu_count() or 1)  # the tracepoint, then ipv4_events and ipv6_events per CPU

    def ready() -> bool:
        if proc.poll() is not None:
            raise BenchError(f"{TCPLIFE} exited with {proc.returncode}: {(workdir / 'tcplife.err').read_text()[-500:]}")
        return perf_event_fds(proc.pid) >= want

    try:
        wait_until(ready, 120, f"{TCPLIFE} to attach", interval=0.1)
    except BaseException:
        peer.stop()
        raise
    peer.started_s = time.monotonic() - t0
    return peer


def peer_cost(before: dict[str, Any], after: dict[str, Any], made: int, seconds: float, lines: int,
              lost_reported: int) -> dict[str, Any]:
    """The peer's figures for one load window, in the agent's shape where they mean the same."""
    cpu = after["cpu_s"] - before["cpu_s"]
    return {
        "cpu_s": cpu, "cpu_s_per_10k_conn": cpu / made * 1e4 if made else None, "cores": cpu / seconds,
        "records_emitted": 2 * made, "records_received": lines, "records_lost": max(0, 2 * made - lines),
        "lost_reported": lost_reported, "spans_sampled_out": 0, "spans_withheld": 0,
        "drained": after.get("drained"), "rss_kb": after.get("VmRSS"), "hwm_kb": after.get("VmHWM"), "bpf": {},
    }
