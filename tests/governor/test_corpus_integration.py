"""Prometheus is the oracle: real exporters' pages (tests/governor/corpus, sources in SOURCES), each
served by a local file server and scraped by one real Prometheus. For every file, the governor's
inventory through `--scrape` and through `--prometheus` holds exactly the series Prometheus stores:
the same metric names, the same series per metric, the same label names and values (instant query
`{job="<file>"}`), Prometheus' five synthetic series per target (`up`, `scrape_*`) aside.

The oracle scrapes with `honor_timestamps: false`: cAdvisor's fixtures carry 2014 timestamps (a live
kubelet's are current), which an instant query "now" would not see; the governor ignores exposed
timestamps, so both count the live series a current kubelet would give.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from governor import errors, exposition
from governor.inventory import Inventory, LabelSet
from governor.promapi import PrometheusSource
from governor.scrape import ScrapeSource
from tests import servers

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parent / "corpus"
FILES = sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".prom", ".om"))
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
             "scrape_series_added"}
CONTENT_TYPES = {".prom": "text/plain; version=0.0.4; charset=utf-8",
                 ".om": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
# Hand-made pages Prometheus 2.42 refuses as a whole (the target goes down); the governor must
# refuse them too rather than count something Prometheus never stores.
REFUSED = {
    "utf8-metric-name.prom": b'# TYPE x gauge\n{"my.metric"} 1\n',          # quoted UTF-8 names came with 3.0
    "latin1-label-value.prom": 'city_up{city="Z\u00fcrich"} 1\n'.encode("latin-1"),
    "duplicate-label.prom": b'x{a="1",a="2"} 1\n',
    "value-not-a-float.prom": b"x 1_000\n",
    "no-eof.om": b"# TYPE x gauge\nx 1\n",
    "exemplar-in-text.prom": b'x_total 1 # {trace_id="a"} 1\n',
}
# Hand-made pages at the edges of the syntax: whatever Prometheus does with each (store or refuse),
# the governor must do the same.
EDGES = {
    "escapes.prom": b'# HELP edge_a\n# TYPE edge_a gauge\nedge_a{x="a\\\\b\\"c\\nd",y="t\\tq",} NaN\n',
    "special-values.prom": b'edge_b{x="1"} +Inf\nedge_b{x="2"} -Inf\nedge_b{x="4"} 1e3\nedge_b{x="5"} -0.0\n',
    "hex-value.prom": b'edge_b{x="3"} 0x1p-2\n',
    "inf-lower.prom": b'edge_b{x="6"} inf\n',
    "value-overflow.prom": b'edge_b{x="7"} 1e999\n',
    "leading-space-comment.prom": b'  # a comment\nedge_m 1\n',
    "tab-separated.prom": b'edge_n{x="1"}\t1\n',
    "om-blank-line.om": b"# TYPE edge_o gauge\nedge_o 1\n\n# EOF\n",
    "om-untyped.om": b"# TYPE edge_p untyped\nedge_p 1\n# EOF\n",
    "bad-type.prom": b"# TYPE edge_q foo\nedge_q 1\n",
    "colon-name.prom": b"edge:r:sum 1\n",
    "float-timestamp.prom": b"edge_s 1 1.5\n",
    "three-fields.prom": b"edge_t 1 2 3\n",
    "no-space-after-brace.prom": b'edge_u{x="1"}1\n',
    "help-without-name.prom": b"# HELP\nedge_v 1\n",
    "reserved-label.prom": b'edge_w{__meta_x="1"} 1\n',
    "om-space-in-braces.om": b'# TYPE edge_x gauge\nedge_x{ x="1"} 1\n# EOF\n',
    "om-no-space-after-brace.om": b'# TYPE edge_y gauge\nedge_y{x="1"}1\n# EOF\n',
    "type-alone.prom": b"# TYPE\nedge_z 1\n",
    "type-without-type.prom": b"# TYPE edge_za\nedge_za 1\n",
    "spaces-in-braces.prom": b'edge_c{ x = "1" , y="2"} 1\n',
    "leading-space.prom": b'  edge_d{x="1"} 1\n',
    "crlf.prom": b'edge_e{x="1"} 1\r\nedge_e{x="2"} 1\r\n',
    "empty-and-duplicate.prom": b'edge_f{x="",y="1"} 1\nedge_f{y="1"} 2\nedge_f{} 3\n',
    "utf8-values.prom": 'edge_g{city="Z\u00fcrich",sym="\u20ac"} 1\n'.encode(),
    "job-instance-labels.prom": b'edge_h{job="a",instance="b",exported_job="c"} 1\n',
    "timestamps.prom": b'edge_i{x="1"} 1 1395066363000\n',
    "om-created-info-stateset.om": (b"# TYPE edge_j info\nedge_j_info{v=\"1\"} 1\n# TYPE edge_k stateset\n"
                                    b'edge_k{edge_k="a"} 1\nedge_k{edge_k="b"} 0\n# TYPE edge_l counter\n'
                                    b"edge_l_total 1\nedge_l_created 1.7e9\n# EOF\n"),
}


def job_of(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def sources() -> dict[str, dict[str, str]]:
    """file -> {repository, path, commit, sha256} from SOURCES."""
    out: dict[str, dict[str, str]] = {}
    text = (CORPUS / "SOURCES").read_text()
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        f, repo, path, commit, _ = (p.strip() for p in line.split("|"))
        out[f] = {"repository": repo, "path": path, "commit": commit}
    for m in re.finditer(r"^# ([0-9a-f]{64})  (\S+)$", text, re.M):
        out[m.group(2)]["sha256"] = m.group(1)
    return out


@pytest.fixture(scope="module")
def file_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            name = self.path.lstrip("/").split("?")[0]
            made = {**REFUSED, **EDGES}
            if name not in FILES and name not in made:
                self.send_error(404)
                return
            data = made[name] if name in made else (CORPUS / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPES[Path(name).suffix])
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    with servers.serve_http(Handler, "corpus") as port:
        yield port


@pytest.fixture(scope="module")
def oracle(file_server: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.PrometheusServer]:
    """One Prometheus scraping every corpus file as its own job."""
    cfg = {
        # 5 s, not 1 s: on a loaded machine a 1 s scrape of a large page can time out, and a failed
        # scrape marks every series of its target stale, so two readings of one job would differ.
        "global": {"scrape_interval": "5s", "scrape_timeout": "5s", "evaluation_interval": "5s"},
        "scrape_configs": [{"job_name": job_of(f), "metrics_path": f"/{f}", "honor_timestamps": False,
                            "static_configs": [{"targets": [f"127.0.0.1:{file_server}"]}]} for f in [*FILES, *REFUSED, *EDGES]],
    }
    with servers.start_prometheus(yaml.safe_dump(cfg, sort_keys=False), tmp_path_factory.mktemp("corpus")) as prom:
        for f in FILES:
            prom.wait_for_first_scrape(job_of(f))
        for f in [*REFUSED, *EDGES]:  # scraped once, whatever the outcome
            servers.poll(lambda f=f: all(servers._rfc3339_to_unix(t["lastScrape"]) > 0 for t in prom.targets(job_of(f))),
                         servers.SCRAPE_TIMEOUT_S, f"a scrape of {f}", prom.log_tail)
        yield prom


def stored(prom: servers.PrometheusServer, job: str) -> dict[str, set[LabelSet]]:
    """What Prometheus holds for `job`: metric name -> label sets (with job and instance)."""
    out: dict[str, set[LabelSet]] = {}
    for r in prom.query(f'{{job="{job}"}}'):
        labels = dict(r["metric"])
        name = labels.pop("__name__")
        if name not in SYNTHETIC:
            out.setdefault(name, set()).add(tuple(sorted(labels.items())))
    return out


def of_inventory(inv: Inventory, job: str | None = None) -> dict[str, set[LabelSet]]:
    out: dict[str, set[LabelSet]] = {}
    for name, m in inv.metrics.items():
        assert not m.truncated, name
        for s in m.series:
            if job is None or dict(s).get("job") == job:
                out.setdefault(name, set()).add(s)
    return {n: s for n, s in out.items() if n not in SYNTHETIC}


@pytest.fixture(scope="module")
def via_prometheus(oracle: servers.PrometheusServer) -> Inventory:
    src = PrometheusSource(oracle.url)
    try:
        return src.collect()
    finally:
        src.close()


def test_corpus_is_what_sources_says() -> None:
    """Every file is listed with repository, path and commit, and is byte for byte what was fetched."""
    listed = sources()
    assert sorted(listed) == FILES and len(FILES) >= 10
    for f, meta in listed.items():
        assert re.fullmatch(r"[0-9a-f]{40}", meta["commit"]) and "/" in meta["repository"], f
        assert hashlib.sha256((CORPUS / f).read_bytes()).hexdigest() == meta["sha256"], f


@pytest.mark.parametrize("name", FILES)
def test_scrape_stores_what_prometheus_stores(name: str, oracle: servers.PrometheusServer, file_server: int) -> None:
    job = job_of(name)
    want = stored(oracle, job)
    assert want, f"Prometheus stored nothing for {name}: {oracle.targets(job)}"
    src = ScrapeSource(f"http://127.0.0.1:{file_server}/{name}", job=job)
    try:
        got = of_inventory(src.collect())
    finally:
        src.close()
    assert {n: len(s) for n, s in got.items()} == {n: len(s) for n, s in want.items()}
    assert got == want
    # The same through Prometheus' own aggregation and its series API.
    counts = {r["metric"]["__name__"]: int(r["value"][1]) for r in oracle.query(f'count by (__name__) ({{job="{job}"}})')}
    assert {n: len(s) for n, s in got.items()} == {n: c for n, c in counts.items() if n not in SYNTHETIC}
    names: dict[str, set[str]] = {}
    for labels in oracle.api("series", **{"match[]": f'{{job="{job}"}}'}):
        if labels["__name__"] not in SYNTHETIC:
            names.setdefault(labels["__name__"], set()).update(k for k in labels if k != "__name__")
    assert {n: {k for s in series for k, _ in s} for n, series in got.items()} == names


def verdict(oracle: servers.PrometheusServer, job: str) -> dict[str, Any]:
    """The target of `job` once its last scrape says something about the page: up, or down for a
    reason other than a timeout (a busy machine can time out one 1 s scrape)."""
    def settled() -> dict[str, Any] | None:
        (t,) = oracle.targets(job)
        slow = "deadline exceeded" in t["lastError"] or "timeout" in t["lastError"].lower()
        return None if t["health"] == "unknown" or (t["health"] == "down" and slow) else t
    return servers.poll(settled, servers.SCRAPE_TIMEOUT_S, f"a scrape of {job} that is not a timeout", oracle.log_tail)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_like_prometheus(name: str, oracle: servers.PrometheusServer, file_server: int) -> None:
    target = verdict(oracle, job_of(name))
    assert target["health"] == "down" and target["lastError"], target
    src = ScrapeSource(f"http://127.0.0.1:{file_server}/{name}", job=job_of(name))
    try:
        with pytest.raises(errors.SourceError, match="Prometheus would refuse"):
            src.collect()
    finally:
        src.close()


@pytest.mark.parametrize("name", sorted(EDGES))
def test_edges_agree_with_prometheus(name: str, oracle: servers.PrometheusServer, file_server: int) -> None:
    target = verdict(oracle, job_of(name))
    src = ScrapeSource(f"http://127.0.0.1:{file_server}/{name}", job=job_of(name))
    try:
        if target["health"] == "down":
            with pytest.raises(errors.SourceError, match="Prometheus would refuse"):
                src.collect()
            return
        got = of_inventory(src.collect())
    finally:
        src.close()
    assert got == stored(oracle, job_of(name)), target


@pytest.mark.parametrize("name", FILES)
def test_prometheus_source_reads_what_prometheus_stores(name: str, oracle: servers.PrometheusServer, via_prometheus: Inventory) -> None:
    job = job_of(name)
    want = stored(oracle, job)
    got = of_inventory(via_prometheus, job)
    assert {n: len(s) for n, s in got.items()} == {n: len(s) for n, s in want.items()}
    assert got == want


@pytest.mark.parametrize("name", FILES)
def test_families_and_types_agree_between_sources(name: str, oracle: servers.PrometheusServer, file_server: int,
                                                 via_prometheus: Inventory) -> None:
    """Histogram and summary members name the same family whether the governor read the page
    or Prometheus' metadata; a counter exposed without `_total` keeps its name and its type."""
    page = exposition.parse(exposition.decode((CORPUS / name).read_bytes()),
                            exposition.OPENMETRICS if name.endswith(".om") else exposition.TEXT)
    for metric in page.series:
        m = via_prometheus.metrics[metric]
        assert (m.type, m.family) == exposition.family_of(metric, page.types), metric


TIGHT_BUDGETS = """\
defaults:
  max_label_values: 40
  runbook_base_url: https://git.example/ops/bcgov/runbooks
tiers:
  oltp: {max_series: 1000, match: {metric_prefixes: [pg_]}}
  platform: {max_series: 4000, match: {metric_prefixes: [node_, prometheus_, container_, machine_, kube_, go_, process_]}}
"""


def test_report_over_the_corpus_reads_right(cli, runner, oracle: servers.PrometheusServer, tmp_path: Path) -> None:
    """`bcgov budget report --prometheus` over the real Prometheus holding the corpus: statuses,
    the exploded histogram named once as a family, its saving equal to what Prometheus counts
    after `without (handler)`, stored names only, one line per finding, absolute runbook links."""
    bfile = tmp_path / "budgets.yaml"
    bfile.write_text(TIGHT_BUDGETS)
    base = ["budget", "report", "--prometheus", oracle.url, "--budgets", str(bfile), "--no-history", "--no-rules"]
    md = runner.invoke(cli, [*base, "--format", "markdown"])
    assert md.exit_code == 3, md.output
    text = md.stdout
    assert text.startswith("### bcgov budget report: over\n")
    assert "| platform | " in text and "over :red_circle:" in text
    family = ["prometheus_http_request_duration_seconds_bucket", "prometheus_http_request_duration_seconds_count",
              "prometheus_http_request_duration_seconds_sum"]
    before = sum(oracle.scalar(f"count({m})") for m in family)
    after = sum(oracle.scalar(f"count(count without (handler) ({m}))") for m in family)
    saved = int(before - after)
    assert (f"- explosion: label `handler` of `prometheus_http_request_duration_seconds` (the whole family) has 46 values "
            f"(cap 40): dropping or aggregating it away saves {saved} series") in text
    assert (f"- drop `handler` from `prometheus_http_request_duration_seconds{{_bucket,_count,_sum}}`: "
            f"{int(before)} → {int(after)} series, saves **{saved}**") in text
    assert "drop `le`" not in text and "drop `quantile`" not in text
    assert "<https://git.example/ops/bcgov/runbooks/BcgovTierBudgetExceeded.md>" in text
    rep = json.loads(runner.invoke(cli, [*base, "--format", "json"]).stdout)
    names = {r["metric"]["__name__"] for r in oracle.query('{__name__=~".+"}')}
    for t in rep["tiers"]:
        for m in t["top_metrics"]:
            assert m["name"] in names, m["name"]  # stored names only, e.g. pg_* counters without _total
        for r in t["recommendations"]:
            assert set(r["metrics"]) <= names, r
    table = runner.invoke(cli, base).stdout
    findings = [ln for ln in table.splitlines() if ln.startswith(("  drop ", "explosion: "))]
    # Each finding is one line that says what it saves, or (for a protected label such as `job`,
    # here on up/scrape_* of the 40-odd corpus jobs) why bcgov will not drop it.
    assert findings and all("saves" in ln or "not a label bcgov drops" in ln for ln in findings), findings
    assert "explosion: label job of up has" in table
