"""Shared bench plumbing: machine facts, statistics, result files, progress, Debian tools."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).with_name("results")

#: Debian packages the benchmarks drive, installed on first use (not needed by `make test`).
BENCH_PACKAGES = {"nginx": "nginx-light", "ab": "apache2-utils"}


class BenchError(Exception):
    """A benchmark cannot run here; the message names the fix."""


def say(msg: str) -> None:
    """One progress line on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """Facts that make figures comparable: kernel, CPUs, memory, load at the start."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "kernel": platform.release(), "nproc": os.cpu_count(), "cpu_model": model, "mem_total_mb": mem_kb // 1024,
        "python": platform.python_version(), "hostname": socket.gethostname(), "loadavg_at_start": os.getloadavg(),
    }


def summary(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Median, min and max of raw samples (None when there are none)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(vals), "median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def percentiles(sorted_values: Sequence[float], qs: Iterable[float] = (0.5, 0.9, 0.99, 0.999)) -> dict[str, float]:
    """Nearest-rank percentiles of already sorted values, keyed p50, p90, p99, p99.9."""
    out: dict[str, float] = {}
    n = len(sorted_values)
    for q in qs:
        key = "p" + f"{q * 100:g}"
        out[key] = sorted_values[min(n - 1, int(q * n))] if n else float("nan")
    return out


def write_result(name: str, data: dict[str, Any], out_dir: Path = RESULTS_DIR) -> Path:
    """bench/results/<YYYY-MM-DD>-<name>.json, with machine facts and the bcgov commit."""
    out_dir.mkdir(parents=True, exist_ok=True)
    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    path = out_dir / f"{day}-{name}.json"
    doc = {"benchmark": name, "utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "commit": _commit(), "machine": machine(), **data}
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def ensure_tools(*commands: str) -> None:
    """Install the Debian packages behind `commands` if missing (bench-only, so not in bootstrap)."""
    missing = [BENCH_PACKAGES[c] for c in commands if shutil.which(c) is None and not Path(f"/usr/sbin/{c}").exists()]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BenchError(f"missing {', '.join(commands)}: install Debian packages {' '.join(missing)} (as root)")
    say(f"installing bench tools from Debian: {' '.join(missing)} (first run only)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, env=env)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise BenchError(f"apt-get install {' '.join(missing)} failed: {r.stderr.strip()[-300:]}")


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate` until truthy; raise BenchError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
