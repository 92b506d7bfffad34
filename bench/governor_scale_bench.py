"""The governor at scale: two-phase `bcgov budget report` on Prometheus and VictoriaMetrics, side by
side with `promtool tsdb analyze` on the same series.

The population is a platform sized for its budgets except one tier: `BIG` metrics hold 95 % of
the series (two per tier, one in serving and platform; `instance` x `pod`, never more than 950
values per label), `SMALL` metrics the rest; tiers by metric prefix (no tier label, as real
exporters), budgets 1.5x each tier's size except stream at 0.75x (over: its biggest metric is at
risk). Prometheus scrapes the population (once: then the interval is reloaded to 3 h), so the series are in its head like a live
Prometheus's (its /api/v1/status/tsdb describes the head only; blocks made by promtool would leave
the head empty), and promtool analyzes a snapshot of that TSDB; VictoriaMetrics gets the same series
through `/api/v1/import/prometheus` (one sample a minute ago, lookback 1 h), and promtool analyzes
blocks made from the same series by `promtool tsdb create-blocks-from openmetrics`. Each command runs in a wrapper process for its own peak RSS; report and
analyze alternate. The report must count exactly the live series; the metrics it enumerated
(exact) and estimated are recorded.

With `--shape uniform`, the old governor bench's population instead (tier label on every series,
every tier 8x over the shipped budgets): everything is at risk, so everything is enumerated; the
worst case, recorded to show what two phases do not fix.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import governor_bench
from bench.agent_proc import REPO
from bench.common import BenchError, free_port, say, summary, wait_until

TIERS = governor_bench.TIERS  # (tier, prefix, hc label)
BIG_PER_TIER = {"stream": 2, "oltp": 2, "batch": 2, "lakehouse": 2, "serving": 1, "platform": 1}
SMALL = 50
BIG_SHARE = 0.95
MAX_POD = 950


def population(total: int) -> Iterator[tuple[str, str, str]]:
    """(tier, metric, label text without braces) for `total` series (rounded down per metric)."""
    big_n = int(total * BIG_SHARE) // sum(BIG_PER_TIER.values())
    inst = math.ceil(big_n / MAX_POD)
    for tier, prefix, _ in TIERS:
        for k in range(BIG_PER_TIER[tier]):
            name = f"{prefix}big_{k}"
            for j in range(big_n):
                yield tier, name, f'instance="node-{j % inst}",pod="pod-{j // inst}"'
    small_n = int(total * (1 - BIG_SHARE)) // SMALL
    for s in range(SMALL):
        tier, prefix, _ = TIERS[s % len(TIERS)]
        for j in range(small_n):
            yield tier, f"{prefix}small_{s}", f'instance="node-{j % inst}",shard="s{j // inst}"'


def budgets_yaml(total: int) -> tuple[str, dict[str, int]]:
    sizes: dict[str, int] = {}
    for tier, _, _ in population(total):
        sizes[tier] = sizes.get(tier, 0) + 1
    lines = ["tiers:"]
    for tier, prefix, _ in TIERS:
        budget = int(sizes[tier] * (0.75 if tier == "stream" else 1.5))
        lines += [f"  {tier}:", f"    max_series: {budget}", f"    match: {{metric_prefixes: [{prefix}]}}"]
    return "\n".join(lines) + "\n", sizes


def write_openmetrics(path: Path, total: int, ts: float) -> None:
    with open(path, "w", encoding="ascii") as fh:
        last = None
        for _, name, labels in population(total):
            if name != last:
                fh.write(f"# TYPE {name} gauge\n")
                last = name
            fh.write(f"{name}{{{labels}}} 1 {ts:.3f}\n")
        fh.write("# EOF\n")


def import_vm(url: str, total: int, ts_ms: int, chunk: int = 100_000) -> None:
    buf: list[str] = []

    def flush() -> None:
        req = urllib.request.Request(f"{url}/api/v1/import/prometheus", data="".join(buf).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=600) as resp:
            if resp.status != 204:
                raise BenchError(f"VictoriaMetrics import answered {resp.status}")
        buf.clear()

    for _, name, labels in population(total):
        buf.append(f"{name}{{{labels}}} 1 {ts_ms}\n")
        if len(buf) >= chunk:
            flush()
    if buf:
        flush()


def _count(url: str, expr: str) -> int:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=300) as resp:
        res = json.loads(resp.read())["data"]["result"]
    return int(float(res[0]["value"][1])) if res else 0


def _report_argv(url: str, budgets: Path | None, series: int) -> list[str]:
    argv = [str(REPO / ".venv/bin/bcgov"), "budget", "report", "--prometheus", url, "--no-history", "--no-rules",
            "--format", "json", "--timeout", "600", "--max-series", str(max(5_000_000, series * 2)),
            "--max-series-per-metric", str(max(500_000, series))]
    return argv + (["--budgets", str(budgets)] if budgets else [])


def _runs(pairs: list[tuple[str, list[str]]], repeats: int, workdir: Path, live: int) -> list[dict[str, Any]]:
    """Alternate the commands `repeats` times; check every report's count against `live`."""
    runs = []
    for k in range(repeats):
        order = pairs if k % 2 == 0 else list(reversed(pairs))
        for name, argv in order:
            out = workdir / f"{name}.out"
            m = governor_bench._measure(argv, out)
            if name.startswith("report"):
                if m["rc"] not in (0, 3):
                    raise BenchError(f"bcgov budget report failed (rc {m['rc']}): {m['stderr_tail']}")
                rep = json.loads(out.read_text())
                if rep["total_series"] != live:
                    raise BenchError(f"bcgov budget report counted {rep['total_series']} series, the server serves {live}")
                m["phases"] = rep.get("phases")
                m["exact_metrics"] = sorted({mm["name"] for t in rep["tiers"] for mm in t["top_metrics"] if mm.get("exact")})
                m["estimated_metrics"] = rep.get("estimated_metrics", [])
                m["tiers"] = {t["name"]: {"series": t["series"], "exact": t.get("series_exact"), "status": t["status"]} for t in rep["tiers"]}
            elif m["rc"] != 0:
                raise BenchError(f"{name} failed: {m['stderr_tail']}")
            runs.append({"repeat": k, "command": name, **{x: y for x, y in m.items()}})
            extra = ""
            if m.get("phases"):
                p = m["phases"]
                extra = f" (statistics {p['statistics_seconds']:.2f}s, enumerated {p['enumerated_series']} series in {p['enumeration_seconds']:.2f}s)"
            say(f"    {name:>10}: {m['seconds']:.2f}s, peak RSS {m['peak_rss_mb']:.0f} MB{extra}")
    return runs


def _stats(runs: list[dict[str, Any]], name: str, key: str) -> dict[str, Any]:
    return summary([r[key] for r in runs if r["command"] == name])


def build_blocks(workdir: Path, series: int, shape: str, ts: float) -> tuple[Path, float]:
    om = workdir / "series.om"
    data = workdir / "prom-data"
    if shape == "uniform":
        governor_bench.write_openmetrics(om, series, ts)
    else:
        write_openmetrics(om, series, ts)
    t = time.monotonic()
    r = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"promtool create-blocks-from failed: {r.stderr.strip()[-300:]}")
    om.unlink()
    return data, time.monotonic() - t


def write_exposition(path: Path, total: int) -> None:
    """The population as Prometheus text format (no timestamps: a scrape stamps them)."""
    with open(path, "w", encoding="ascii") as fh:
        last = None
        for _, name, labels in population(total):
            if name != last:
                fh.write(f"# TYPE {name} gauge\n")
                last = name
            fh.write(f"{name}{{{labels}}} 1\n")


@contextlib.contextmanager
def serve_file(path: Path) -> Iterator[int]:
    """`path` as a /metrics page on a free loopback port (a threaded server: scrapes may overlap)."""
    body = path.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def prometheus_side(series: int, shape: str, repeats: int, workdir: Path, budgets: Path | None) -> dict[str, Any]:
    """A real Prometheus scraping the population every 2 minutes (so its series are in the head, as
    a live Prometheus's are: /api/v1/status/tsdb describes the head only); promtool analyzes a
    snapshot of that TSDB (the head written as a block)."""
    say(f"  Prometheus, {series} series ({shape}): scraping them into the head")
    page = workdir / "metrics.txt"
    if shape == "uniform":
        governor_bench.write_openmetrics(page, series, time.time())
        text = "\n".join(ln.rsplit(" ", 1)[0] if not ln.startswith("#") else ln for ln in page.read_text().splitlines()
                         if ln != "# EOF")
        page.write_text(text + "\n")
    else:
        write_exposition(page, series)
    data = workdir / "prom-data"
    with serve_file(page) as exporter_port:
        port = free_port()
        (workdir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 2m\n  scrape_timeout: 110s\nscrape_configs:\n"
            f"  - job_name: bench\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n")
        log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 (Prometheus writes it until it stops)
        prom = subprocess.Popen(["prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--web.listen-address=127.0.0.1:{port}",
                                 f"--storage.tsdb.path={data}", "--web.enable-admin-api", "--web.enable-lifecycle",
                                 "--query.lookback-delta=4h"],
                                stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            def loaded() -> int:
                if prom.poll() is not None:
                    raise BenchError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-300:]}")
                try:  # the head's series count: no query pass over 1M series while the scrape runs
                    with urllib.request.urlopen(f"{url}/api/v1/status/tsdb", timeout=60) as resp:
                        return json.loads(resp.read())["data"]["headStats"]["numSeries"] >= series
                except OSError:
                    return False
            t = time.monotonic()
            wait_until(loaded, 900, "Prometheus' first scrape of the population", interval=1.0)
            load_s = time.monotonic() - t
            # One scrape of 1M series costs Prometheus ~30 s of CPU here: after the first, a 3 h interval
            # keeps it out of the measurements. A reload keeps the target (no staleness markers), and
            # the 4 h lookback keeps its series live.
            (workdir / "prometheus.yml").write_text((workdir / "prometheus.yml").read_text().replace("2m", "3h").replace("110s", "2m"))
            urllib.request.urlopen(urllib.request.Request(f"{url}/-/reload", method="POST"), timeout=60).close()
            live = _count(url, 'count({__name__=~".+"})')
            req = urllib.request.Request(f"{url}/api/v1/admin/tsdb/snapshot", method="POST")
            with urllib.request.urlopen(req, timeout=600) as resp:
                snap = data / "snapshots" / json.loads(resp.read())["data"]["name"]
            say(f"  Prometheus serves {live} series (first scrape after {load_s:.0f}s, server RSS {_rss_mb(prom.pid):.0f} MB); "
                f"report vs analyze of its snapshot x{repeats}")
            runs = _runs([("report", _report_argv(url, budgets, series)), ("analyze", ["promtool", "tsdb", "analyze", str(snap)])],
                         repeats, workdir, live)
            server_rss = _rss_mb(prom.pid)
        finally:
            prom.terminate()
            prom.wait(60)
            log.close()
    rep = [r for r in runs if r["command"] == "report"]
    ana = [r for r in runs if r["command"] == "analyze"]
    return {"backend": "prometheus", "series": series, "shape": shape, "live_series": live, "first_scrape_s": load_s,
            "server_rss_mb": server_rss,
            "report_s": _stats(runs, "report", "seconds"), "analyze_s": _stats(runs, "analyze", "seconds"),
            "report_over_analyze": summary([a["seconds"] / b["seconds"] for a, b in zip(rep, ana, strict=True)]),
            "report_peak_rss_mb": _stats(runs, "report", "peak_rss_mb"), "analyze_peak_rss_mb": _stats(runs, "analyze", "peak_rss_mb"),
            "runs": runs}


def vm_side(series: int, shape: str, repeats: int, workdir: Path, budgets: Path | None, analyze_ref: bool) -> dict[str, Any]:
    ts = time.time() - 60
    ref: dict[str, Any] = {}
    if analyze_ref:  # the same series as Prometheus blocks, for promtool tsdb analyze side by side
        say(f"  VictoriaMetrics, {series} series: blocks for the promtool reference")
        data, _ = build_blocks(workdir, series, shape, ts)
        ref = {"analyze": ["promtool", "tsdb", "analyze", str(data)]}
    port = free_port()
    log = open(workdir / "vm.log", "wb")  # noqa: SIM115 (VictoriaMetrics writes it until it stops)
    vm = subprocess.Popen(["victoria-metrics", f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={workdir / 'vm-data'}",
                           "-search.latencyOffset=1s", "-search.maxStalenessInterval=1h",
                           f"-search.maxUniqueTimeseries={max(10_000_000, series * 2)}", "-loggerLevel=WARN"],
                          stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ok(f"{url}/health"), 60, "VictoriaMetrics to start", interval=0.2)
        say(f"  VictoriaMetrics, {series} series ({shape}): importing")
        t = time.monotonic()
        if shape == "uniform":
            raise BenchError("--shape uniform is for Prometheus only")
        import_vm(url, series, int(ts * 1000))
        expected = sum(1 for _ in population(series))
        # The index's series count (VictoriaMetrics' /api/v1/series/count): a count() query over 5M
        # series is refused (422) by a default-sized server. The report must then count exactly these.
        wait_until(lambda: _series_count(url) >= expected, 900, f"VictoriaMetrics to index {expected} series", interval=1.0)
        live = expected
        import_s = time.monotonic() - t
        rss = _rss_mb(vm.pid)
        say(f"  VictoriaMetrics serves {live} series (import {import_s:.0f}s, server RSS {rss:.0f} MB); report x{repeats}")
        runs = _runs([("report", _report_argv(url, budgets, series)), *ref.items()], repeats, workdir, live)
    finally:
        vm.terminate()
        vm.wait(60)
        log.close()
    out = {"backend": "victoriametrics", "series": series, "shape": shape, "live_series": live, "import_s": import_s,
           "server_rss_mb": rss, "report_s": _stats(runs, "report", "seconds"),
           "report_peak_rss_mb": _stats(runs, "report", "peak_rss_mb"), "runs": runs}
    if ref:
        rep = [r for r in runs if r["command"] == "report"]
        ana = [r for r in runs if r["command"] == "analyze"]
        out["analyze_s"] = _stats(runs, "analyze", "seconds")
        out["report_over_analyze"] = summary([a["seconds"] / b["seconds"] for a, b in zip(rep, ana, strict=True)])
    return out


def _series_count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/api/v1/series/count", timeout=300) as resp:
        return int(json.loads(resp.read())["data"][0])


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(prometheus_sizes: list[int], vm_sizes: list[int], repeats: int, shape: str = "platform",
        analyze_ref: bool = True) -> dict[str, Any]:
    for tool in ("promtool", "prometheus", "victoria-metrics"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found: run scripts/bootstrap.sh (Debian packages prometheus, victoria-metrics)")
    out = []
    for backend, sizes in (("prometheus", prometheus_sizes), ("victoriametrics", vm_sizes)):
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="bcgov-bench-scale-") as d:
                budgets = None
                if shape == "platform":
                    budgets = Path(d) / "budgets.yaml"
                    budgets.write_text(budgets_yaml(n)[0])
                side = prometheus_side if backend == "prometheus" else vm_side
                args = (n, shape, repeats, Path(d), budgets) + ((analyze_ref,) if backend == "victoriametrics" else ())
                try:
                    out.append(side(*args))  # type: ignore[arg-type]  # args fit the side chosen above
                except Exception as exc:  # noqa: BLE001 - one size failing must not lose the others' figures
                    say(f"  {backend} {n}: failed: {exc!r}")
                    out.append({"backend": backend, "series": n, "shape": shape, "error": repr(exc)[-500:]})
    return {"params": {"prometheus_sizes": prometheus_sizes, "vm_sizes": vm_sizes, "repeats": repeats, "shape": shape,
                       "big_per_tier": BIG_PER_TIER, "small_metrics": SMALL, "big_share": BIG_SHARE},
            "sizes": out}
