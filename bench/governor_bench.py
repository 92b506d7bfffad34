"""Governor speed: `bcgov budget report` against `promtool tsdb analyze` on the same synthetic TSDB.

The TSDB is built with `promtool tsdb create-blocks-from openmetrics` from series spread over the
shipped budgets' tiers (by metric prefix and a `tier` label) with a high-cardinality label per tier
(partition, run_id, query_id, ...), one sample each a minute ago, and served by a real Prometheus
(the report reads its HTTP API; promtool reads the blocks directly). Each command runs in a fresh
wrapper process so its peak RSS (ru_maxrss of the wrapper's children) is its own. Runs alternate
report/analyze `REPEATS` times per size.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench.agent_proc import REPO
from bench.common import BenchError, free_port, say, summary, wait_until

REPEATS = 3
# (tier, metric prefix, high-cardinality label): prefixes match governor/defaults/budgets.yaml.
TIERS = (("oltp", "pg_", "datname"), ("stream", "redpanda_", "partition"), ("batch", "spark_", "run_id"),
         ("lakehouse", "minio_", "bucket"), ("serving", "trino_", "query_id"), ("platform", "node_", "device"))
METRICS_PER_TIER = 10
INSTANCES = 20

MEASURE = """\
import resource, subprocess, sys, time
t = time.monotonic()
with open(sys.argv[1], "wb") as out:
    r = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE, text=True)
print(time.monotonic() - t, r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, repr(r.stderr[-300:]))
"""


def write_openmetrics(path: Path, series: int, ts: float) -> None:
    """`series` gauge series across the tiers, grouped by family as OpenMetrics requires."""
    per_metric = max(1, series // (len(TIERS) * METRICS_PER_TIER))
    with open(path, "w", encoding="ascii") as fh:
        for tier, prefix, hc in TIERS:
            for m in range(METRICS_PER_TIER):
                name = f"{prefix}bench_metric_{m}"
                fh.write(f"# TYPE {name} gauge\n")
                for j in range(per_metric):
                    fh.write(f'{name}{{instance="node-{j % INSTANCES}",tier="{tier}",{hc}="v{j // INSTANCES}"}} {j % 97} {ts:.3f}\n')
        fh.write("# EOF\n")


def _measure(argv: list[str], stdout: Path) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-c", MEASURE, str(stdout), *argv], capture_output=True, text=True, timeout=3600, cwd=REPO)
    secs, rc, maxrss_kb, err = r.stdout.split(" ", 3)
    return {"seconds": float(secs), "rc": int(rc), "peak_rss_mb": int(maxrss_kb) / 1024, "stderr_tail": err.strip()}


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=60) as resp:
        return json.loads(resp.read())["data"]["result"]


def one_size(series: int, workdir: Path) -> dict[str, Any]:
    """Build, serve and measure one TSDB size."""
    om = workdir / "series.om"
    data = workdir / "data"
    say(f"  {series} series: writing OpenMetrics, building blocks with promtool")
    write_openmetrics(om, series, time.time() - 60)
    t = time.monotonic()
    r = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"promtool create-blocks-from failed: {r.stderr.strip()[-300:]}")
    build_s = time.monotonic() - t
    om.unlink()
    port = free_port()
    (workdir / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    prom = subprocess.Popen(["prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--web.listen-address=127.0.0.1:{port}",
                             f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=30d",
                             # One sample per series: keep it live for the whole run (the default 5 m
                             # lookback can end mid-run at 1M); query cost measured the same either way.
                             "--query.lookback-delta=1h"],
                            stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "wb"))  # noqa: SIM115 (Prometheus writes it until it stops)
    url = f"http://127.0.0.1:{port}"
    try:
        def loaded() -> int:
            if prom.poll() is not None:
                raise BenchError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-300:]}")
            try:
                res = _query(url, 'count({__name__=~".+_bench_metric_.+"})')
            except OSError:
                return 0
            return int(float(res[0]["value"][1])) if res else 0

        live = wait_until(loaded, 600, "Prometheus to serve the synthetic blocks", interval=0.5)
        say(f"  Prometheus serves {live} series; timing report vs analyze x{REPEATS}")
        report_argv = [str(REPO / ".venv/bin/bcgov"), "budget", "report", "--prometheus", url, "--no-history", "--no-rules",
                       "--format", "json", "--timeout", "300", "--max-series", str(max(5_000_000, series * 2))]
        analyze_argv = ["promtool", "tsdb", "analyze", str(data)]
        runs: list[dict[str, Any]] = []
        for k in range(REPEATS):
            for name, argv in (("report", report_argv), ("analyze", analyze_argv)) if k % 2 == 0 else \
                    (("analyze", analyze_argv), ("report", report_argv)):
                out = workdir / f"{name}.out"
                m = _measure(argv, out)
                if name == "report" and m["rc"] not in (0, 3):  # 3: over budget, which synthetic data is
                    raise BenchError(f"bcgov budget report failed (rc {m['rc']}): {m['stderr_tail']}")
                if name == "report" and (seen := json.loads(out.read_text())["total_series"]) != live:
                    raise BenchError(f"bcgov budget report counted {seen} series, Prometheus serves {live}")
                if name == "analyze" and m["rc"] != 0:
                    raise BenchError(f"promtool tsdb analyze failed: {m['stderr_tail']}")
                runs.append({"repeat": k, "command": name, **m})
                say(f"    {name:>7}: {m['seconds']:.2f}s, peak RSS {m['peak_rss_mb']:.0f} MB")
    finally:
        prom.terminate()
        prom.wait(30)
    rep = [r for r in runs if r["command"] == "report"]
    ana = [r for r in runs if r["command"] == "analyze"]
    return {
        "series": series, "live_series": live, "create_blocks_s": build_s,
        "report_s": summary([r["seconds"] for r in rep]), "analyze_s": summary([r["seconds"] for r in ana]),
        "report_over_analyze": summary([a["seconds"] / b["seconds"] for a, b in zip(rep, ana, strict=True)]),
        "report_peak_rss_mb": summary([r["peak_rss_mb"] for r in rep]),
        "analyze_peak_rss_mb": summary([r["peak_rss_mb"] for r in ana]), "runs": runs,
    }


def run(sizes: list[int]) -> dict[str, Any]:
    for tool in ("promtool", "prometheus"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found: run scripts/bootstrap.sh (Debian package prometheus)")
    out = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bcgov-bench-tsdb-") as d:
            out.append(one_size(n, Path(d)))
    return {"params": {"sizes": sizes, "repeats": REPEATS, "tiers": [t[0] for t in TIERS],
                       "metrics_per_tier": METRICS_PER_TIER}, "sizes": out}
