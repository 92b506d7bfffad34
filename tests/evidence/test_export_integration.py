"""End to end against real servers: a prometheus_client exporter on loopback, Debian's Prometheus
scraping it, Debian's Alertmanager with a pushed alert, and agent-format spans/logs; the real
`bcgov` console script exports a window, and the bundle is checked file by file."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from governor.evidence import csvout  # noqa: E402
from tests import servers  # noqa: E402
from tests.evidence import telemetry_files as tf  # noqa: E402

BCGOV = str(ROOT / ".venv" / "bin" / "bcgov")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUNBOOK = "https://runbooks.example/bcgov/BcgovOomKill"


def rfc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_bcgov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BCGOV, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


class Exporter:
    """bcgov_* metrics with known values on a real prometheus_client registry."""

    def __init__(self) -> None:
        self.reg = CollectorRegistry()
        ident = ["namespace", "pod", "workload", "tier"]
        self.conns = Counter("bcgov_tcp_connections", "c", ["direction", "outcome", *ident], registry=self.reg)
        self.resets = Counter("bcgov_tcp_resets", "r", ["direction", *ident], registry=self.reg)
        self.ooms = Counter("bcgov_oom_kills", "o", ident, registry=self.reg)
        self.dur = Histogram("bcgov_tcp_connection_duration_seconds", "d", ["direction", "outcome", *ident],
                             buckets=(0.001, 0.01, 0.1, 1.0), registry=self.reg)
        self.tier_series = Gauge("bcgov_governor_tier_series", "s", ["tier"], registry=self.reg)
        self.tier_budget = Gauge("bcgov_governor_tier_budget_series", "b", ["tier"], registry=self.reg)
        self.me = ("payments", "ledger-0", "ledger", "gold")
        self.other = ("other", "x-0", "x", "bronze")

    def step(self, n: int) -> None:
        """Advance every counter by known amounts (`n` selects the amount, so rates are non-zero)."""
        self.conns.labels("active", "ok", *self.me).inc(23 * n)
        self.conns.labels("active", "reset", *self.me).inc(3 * n)
        self.conns.labels("active", "ok", *self.other).inc(1000)
        self.resets.labels("received", *self.me).inc(3 * n)
        self.ooms.labels(*self.me).inc(n)
        for _ in range(5 * n):
            self.dur.labels("active", "ok", *self.me).observe(0.05)
        self.tier_series.labels("gold").set(1200 * n)
        self.tier_budget.labels("gold").set(1500)

    def text(self) -> str:
        return generate_latest(self.reg).decode()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("evidence")
    ex = Exporter()
    ex.step(1)
    with servers.serve_exposition(ex.text()) as expo, \
            servers.start_prometheus(servers.scrape_config(expo.target, job="agent"), tmp) as prom, \
            servers.start_alertmanager(tmp) as am:
        t0 = time.time()
        prom.wait_for_first_scrape("agent")
        for n in (2, 3):  # two more rounds of increments, each seen by a scrape
            ex.step(n)
            expo.set_body(ex.text())
            prom.wait_for_scrape_after("agent", time.time())
        spans, logs = tf.write(tmp, t0)
        alert = {"labels": {"alertname": "BcgovOomKill", "namespace": "payments", "tier": "gold", "severity": "page"},
                 "annotations": {"summary": "OOM kill in payments", "runbook_url": RUNBOOK},
                 "startsAt": rfc(t0 + 1)}
        requests.post(f"{am.url}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()
        am.wait_for_alerts(1, alertname="BcgovOomKill")
        since, until = rfc(t0 - 5), rfc(time.time())
        prom_url = prom.url.replace("http://", f"http://evidence:{tf.SECRET_PROM}@")
        out = tmp / "bundle"
        res = run_bcgov("evidence", "export", "--since", since, "--until", until, "--namespace", "payments",
                        "--prometheus", prom_url, "--alertmanager", am.url, "--spans-file", str(spans),
                        "--logs", str(logs), "--out", str(out))
        # Reference values straight from Prometheus, while it still runs.
        mf = json.loads((out / "MANIFEST.json").read_text()) if (out / "MANIFEST.json").exists() else {}
        reference = {}
        w = mf.get("window", {})
        for csv_path in sorted((out / "series").glob("*.csv")):
            promql, _ = csvout.parse(csv_path.read_text())
            r = requests.post(f"{prom.url}/api/v1/query_range", timeout=10, data={
                "query": promql, "start": f"{_unix(since):.3f}", "end": f"{_unix(until):.3f}", "step": w.get("step_seconds")})
            reference[csv_path.stem] = r.json()["data"]["result"]
        yield {"out": out, "res": res, "reference": reference, "t0": t0}


def _unix(ts: str) -> float:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


pytestmark = pytest.mark.integration


def test_export_is_complete(bundle: dict) -> None:
    res = bundle["res"]
    assert res.returncode == 0, res.stderr
    out: Path = bundle["out"]
    for name in ("alerts.json", "spans.jsonl", "logs.jsonl", "budget-report.json", "identity.json", "timeline.md",
                 "postmortem.md", "MANIFEST.json", "series/tcp_connections.csv", "series/oom_kills.csv",
                 "series/tcp_resets.csv", "series/tier_series_vs_budget.csv", "plots/tcp_connections.png",
                 "plots/oom_kills.png"):
        assert (out / name).is_file(), name
    mf = json.loads((out / "MANIFEST.json").read_text())
    assert mf["complete"] is True and mf["missing"] == {}
    assert set(mf["sources"]) == {"prometheus", "alertmanager", "spans", "logs"}


def test_csv_values_equal_prometheus(bundle: dict) -> None:
    out: Path = bundle["out"]
    checked = 0
    for stem, result in bundle["reference"].items():
        promql, got = csvout.parse((out / "series" / f"{stem}.csv").read_text())
        assert "bcgov_" in promql
        want = {}
        for r in result:
            legend = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(r["metric"].items()) if k != "__name__") + "}"
            want[legend] = [(float(t), float(v)) for t, v in r["values"]]
        assert got == want, stem
        checked += sum(len(v) for v in want.values())
    # the scoped connection series exist and the other namespace's traffic was filtered out
    _, conns = csvout.parse((out / "series" / "tcp_connections.csv").read_text())
    assert conns and all("other" not in k for k in conns)
    assert 'namespace="payments"' in csvout.parse((out / "series" / "tcp_connections.csv").read_text())[0]
    assert checked > 0


def test_alerts_and_timeline(bundle: dict) -> None:
    out: Path = bundle["out"]
    alerts = json.loads((out / "alerts.json").read_text())["alerts"]
    am = [a for a in alerts if a["source"] == "alertmanager" and a["alertname"] == "BcgovOomKill"]
    assert am and am[0]["runbook_url"] == RUNBOOK
    lines = (out / "timeline.md").read_text().splitlines()
    alert_i = next(i for i, l in enumerate(lines) if "BcgovOomKill firing" in l)
    oom_i = next(i for i, l in enumerate(lines) if "| oom kill |" in l)
    reset_i = next(i for i, l in enumerate(lines) if "| reset |" in l)
    assert alert_i < reset_i < oom_i  # alert at t0+1, reset at t0+2, OOM at t0+3
    times = [l.split("|")[1].strip() for l in lines if l.startswith("| 20")]
    assert times == sorted(times)
    pm = (out / "postmortem.md").read_text()
    assert "BcgovOomKill firing" in pm and "[alerts.json](alerts.json)" in pm and "new test" in pm and "new alert" in pm


def test_spans_logs_identity(bundle: dict) -> None:
    out: Path = bundle["out"]
    logs = [json.loads(l) for l in (out / "logs.jsonl").read_text().splitlines()]
    assert [l["body"] for l in logs] == ["process exec", "tcp connection reset", "oom kill", "process exit"]
    assert tf.OUT_OF_SCOPE_MARK not in (out / "logs.jsonl").read_text()
    spans = [json.loads(l) for l in (out / "spans.jsonl").read_text().splitlines()]
    trace = spans[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    assert trace == logs[1]["trace_id"]  # the pillars still join
    ident = json.loads((out / "identity.json").read_text())
    assert ident["pods"] == ["ledger-0"] and ident["tiers"] == ["gold"] and ident["namespaces"] == ["payments"]


def test_pngs_are_valid_images(bundle: dict) -> None:
    from matplotlib import image

    pngs = sorted((bundle["out"] / "plots").glob("*.png"))
    assert len(pngs) >= 5
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC
        h, w = image.imread(str(p)).shape[:2]
        assert (w, h) == (1000, 400)


def test_no_planted_secret_anywhere(bundle: dict) -> None:
    out: Path = bundle["out"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    for p in files:
        data = p.read_bytes()
        for secret in tf.SECRETS:
            assert secret.encode() not in data, f"{secret} leaked into {p.relative_to(out)}"
    mf = json.loads((out / "MANIFEST.json").read_text())
    assert "--prometheus" in mf["command"] and any("***" in a for a in mf["command"])


def test_verify_passes_then_one_changed_byte_fails(bundle: dict, tmp_path: Path) -> None:
    out: Path = bundle["out"]
    ok = run_bcgov("evidence", "verify", str(out))
    assert ok.returncode == 0, ok.stderr
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(out), str(copy)], check=True)
    target = copy / "series" / "oom_kills.csv"
    data = bytearray(target.read_bytes())
    data[-2] ^= 0x01
    target.write_bytes(bytes(data))
    bad = run_bcgov("evidence", "verify", str(copy))
    assert bad.returncode == 1
    assert "series/oom_kills.csv: changed (sha256 mismatch)" in bad.stderr
