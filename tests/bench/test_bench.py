"""The bench's own arithmetic and plumbing (the benchmarks themselves run with `make bench`, never
here): summaries and ratios, metric parsing, the paced client against a real local server, and the
synthetic TSDB that real promtool must accept."""

from __future__ import annotations

import http.server
import subprocess
import threading
from pathlib import Path

import pytest

from bench import agent_proc, common, governor_bench, paced_client, storm


def test_summary_and_percentiles() -> None:
    assert common.summary([3.0, 1.0, 2.0, None]) == {"n": 3, "median": 2.0, "min": 1.0, "max": 3.0}
    assert common.summary([])["median"] is None
    pct = common.percentiles([float(i) for i in range(1, 101)])
    assert pct["p50"] == 51.0 and pct["p99"] == 100.0


def _run(k: int, rate: object, side: str, cps: float, p99: float, cpu10k: float = 0.0, lost: int = 0) -> dict:
    r = {"round": k, "rate": rate, "side": side, "made": int(cps), "conn_per_s": cps, "p99_s": p99}
    if side != "without":
        r["agent"] = {"cpu_s_per_10k_conn": cpu10k, "cores": 0.5, "idle_cores": 0.01, "records_emitted": 2 * int(cps), "records_lost": lost,
                      "spans_sampled_out": 0, "rss_kb": 200 * 1024, "hwm_kb": 210 * 1024, "kernel_counted_passive": int(cps),
                      "bpf": {"tcp_lifecycle": {"ns_per_run": 200.0}}}
    return r


def test_storm_summary_pairs_each_round_with_its_own_baseline() -> None:
    raw = []
    for k, (base, with_, budget) in enumerate([(1000.0, 900.0, 950.0), (2000.0, 1000.0, 1800.0)]):
        raw += [_run(k, "saturation", "without", base, 0.001), _run(k, "saturation", "with", with_, 0.002, 3.0, 7),
                _run(k, "saturation", "budget", budget, 0.001, 2.0)]
    out = storm.summarise(raw, 2, ["saturation"])
    w = out["with/saturation"]
    assert w["conn_per_s_ratio"]["min"] == pytest.approx(0.5) and w["conn_per_s_ratio"]["max"] == pytest.approx(0.9)
    assert w["p99_ratio"]["median"] == pytest.approx(2.0)
    assert w["records_lost"]["median"] == 7 and w["agent_rss_mb_steady"]["median"] == 200
    assert out["budget/saturation"]["conn_per_s_ratio"]["median"] == pytest.approx((0.95 + 0.9) / 2)
    assert w["bpf_ns_per_run"]["tcp_lifecycle"]["median"] == 200.0


def test_metrics_parsing_sums_by_label() -> None:
    text = ('# TYPE bcgov_agent_events counter\nbcgov_agent_events_total{probe="a"} 3\nbcgov_agent_events_total{probe="b"} 4\n'
            '# TYPE bcgov_tcp_connections counter\nbcgov_tcp_connections_total{direction="passive",outcome="normal"} 5\n'
            'bcgov_tcp_connections_total{direction="active",outcome="normal"} 6\n')
    m = agent_proc.parse_metrics(text)
    assert agent_proc.total(m, "bcgov_agent_events_total") == 7
    assert agent_proc.total(m, "bcgov_agent_events_total", probe="b") == 4
    assert agent_proc.total(m, "bcgov_tcp_connections_total", direction="passive") == 5


def test_proc_readings_of_this_process() -> None:
    import os

    assert agent_proc.cpu_seconds(os.getpid()) > 0
    mem = agent_proc.memory_kb(os.getpid())
    assert mem["VmHWM"] >= mem["VmRSS"] > 0


def test_paced_client_makes_every_scheduled_connection() -> None:
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        out = paced_client.run("127.0.0.1", srv.server_address[1], rate=200, seconds=0.5, workers=2)
    finally:
        srv.shutdown()
        srv.server_close()
    assert out["completed"] == 100 and out["errors"] == 0
    assert out["p50_s"] <= out["p99_s"] <= out["max_s"]


@pytest.mark.integration
def test_synthetic_tsdb_is_accepted_by_promtool(tmp_path: Path) -> None:
    import time

    om = tmp_path / "s.om"
    governor_bench.write_openmetrics(om, 1200, time.time() - 60)
    lines = om.read_text().splitlines()
    assert lines[-1] == "# EOF" and sum(1 for x in lines if not x.startswith("#")) == 1200
    r = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(tmp_path / "data")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["promtool", "tsdb", "analyze", str(tmp_path / "data")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "\nSeries: 1200\n" in r.stdout


def test_targets_are_judged_from_the_figures_not_typed() -> None:
    from bench import report

    rec = {"recording": {"bcc_rss_mb": 76.0},
           "replay": {"full": {"us": {"p50": 9.0}, "all_in_cpu_us_per_record": 20.0}, "shed": {"us": {"p50": 5.0}}}}
    gov = {"sizes": [{"live_series": 1000, "report_over_analyze": common.summary([1.5]), "report_peak_rss_mb": common.summary([100.0])}]}
    rows = report.targets_table(None, rec, gov)
    assert "p50 9.0 us" in rows[2] and rows[2].endswith("| yes |")
    assert rows[3].endswith("| **no** |")  # 1.5x slower than analyze
