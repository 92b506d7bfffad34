"""The dashboards as code: committed JSON equals the build, and the incident-work properties hold
(variables, drill-down links carrying them, exemplars to Tempo, Loki logs, runbooks one click away)."""

from __future__ import annotations

import json
import pathlib
import re

import dashboard_json
import pytest
from click.testing import CliRunner

from bcgov import cli as bcgov_cli
from dashboards import build, common

DASHBOARDS = dashboard_json.committed()
RUNBOOKS = {p.stem for p in (dashboard_json.ROOT / "runbooks").glob("*.md")}


def test_committed_json_equals_the_build() -> None:
    built = build.render_all()
    assert sorted(built) == sorted(DASHBOARDS), "run: .venv/bin/bcgov dashboards build"
    for name, text in built.items():
        assert (dashboard_json.JSON_DIR / name).read_text() == text, f"{name} is stale: run .venv/bin/bcgov dashboards build"


def test_cli_build_writes_the_same_files(tmp_path: pathlib.Path) -> None:
    result = CliRunner().invoke(bcgov_cli.cli, ["dashboards", "build", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file())
    assert written == sorted(DASHBOARDS)
    for name in written:
        assert (tmp_path / "out" / name).read_text() == (dashboard_json.JSON_DIR / name).read_text()
    # trial 2: --out wrote only the JSON, silently; the provisioning files go to OUT/provisioning, each path printed
    prov = dashboard_json.ROOT / "dashboards" / "provisioning"
    for rel in ("datasources/bcgov.yaml", "dashboards/bcgov.yaml"):
        path = tmp_path / "out" / "provisioning" / rel
        assert path.read_text() == (prov / rel).read_text()
        assert str(path) in result.output.splitlines()


def test_four_dashboards_with_unique_uids() -> None:
    uids = {d["uid"] for d in DASHBOARDS.values()}
    assert uids == {common.UID_OVERVIEW, common.UID_WORKLOAD, common.UID_NODE, common.UID_BUDGET}


@pytest.mark.parametrize("uid", [common.UID_OVERVIEW, common.UID_WORKLOAD])
def test_incident_dashboards_have_every_variable(uid: str) -> None:
    dash = next(d for d in DASHBOARDS.values() if d["uid"] == uid)
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "tempo", "loki", "node", "tier", "namespace", "workload", "pod"]


def test_every_panel_queries_the_datasource_variable() -> None:
    for dash in DASHBOARDS.values():
        for p in dashboard_json.panels(dash):
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p["targets"] and all(t["refId"] for t in p["targets"]), p["title"]


def test_overview_links_to_the_drilldown_carrying_the_variables() -> None:
    overview = next(d for d in DASHBOARDS.values() if d["uid"] == common.UID_OVERVIEW)
    urls = [l["url"] for p in dashboard_json.panels(overview) for l in dashboard_json.links(p)]
    drill = [u for u in urls if u.startswith(f"/d/{common.UID_WORKLOAD}?")]
    assert drill
    for var in ("datasource", "node", "tier", "namespace", "workload", "pod"):
        assert any(f"${{{var}:queryparam}}" in u for u in drill), var
    # A per-series link puts the clicked workload into the drill-down's variables.
    assert any("var-workload=${__field.labels.workload}" in u for u in drill)


# Histograms whose buckets carry a span's trace_id as exemplar (agent/metrics/exemplars.py); block I/O and
# run-queue latency come from the kernel with no span, so they have none.
WITH_EXEMPLARS = ("bcgov_tcp_connection_duration_seconds_bucket",)


def test_latency_panels_offer_a_tempo_link_exactly_when_their_metric_has_exemplars() -> None:
    found = {True: 0, False: 0}
    for dash in DASHBOARDS.values():
        for p in dashboard_json.panels(dash):
            # Latency panels are the ones built on a `_seconds` histogram's buckets.
            if not any("_seconds_bucket" in t["expr"] for t in p.get("targets", [])):
                continue
            has = any(m in t["expr"] for t in p["targets"] for m in WITH_EXEMPLARS)
            found[has] += 1
            tempo = [l for l in dashboard_json.links(p) if "${tempo}" in l["url"] and "trace_id" in l["url"]]
            if has:
                assert all(t.get("exemplar") for t in p["targets"]), p["title"]
                assert tempo, p["title"]
            else:
                assert not any(t.get("exemplar") for t in p["targets"]) and not tempo, p["title"]
    assert found[True] >= 3 and found[False] >= 6


def test_workload_panels_link_to_the_pods_logs_in_loki() -> None:
    drill = next(d for d in DASHBOARDS.values() if d["uid"] == common.UID_WORKLOAD)
    loki = [l["url"] for p in dashboard_json.panels(drill) for l in dashboard_json.links(p) if "${loki}" in l["url"]]
    assert loki
    assert all("${__from}" in u and "${__to}" in u and "$pod" in u for u in loki)


def test_workload_panels_open_the_agents_events_and_the_applications_logs() -> None:
    """Two log views per workload panel: the agent's kernel-event lines about the pod (its own
    service_name stream, filtered by the pod's structured metadata) and the pod's own output."""
    import urllib.parse

    drill = next(d for d in DASHBOARDS.values() if d["uid"] == common.UID_WORKLOAD)
    workload_panels = [p for p in dashboard_json.panels(drill)
                       if p["type"] != "row" and any("namespace=~\"$namespace\"" in t["expr"] for t in p["targets"])]
    assert len(workload_panels) >= 5
    for p in workload_panels:
        exprs = [json.loads(urllib.parse.unquote(l["url"].split("left=", 1)[1]))["queries"][0]["expr"]
                 for l in dashboard_json.links(p) if "${loki}" in l["url"]]
        assert common.AGENT_EVENTS_SELECTOR + ' | k8s_namespace_name=~"$namespace" | k8s_pod_name=~"$pod"' in exprs, p["title"]
        assert '{namespace=~"$namespace", pod=~"$pod"}' in exprs, p["title"]


def test_every_alert_has_a_runbook_link_on_some_panel_and_each_resolves() -> None:
    linked = set()
    for dash in DASHBOARDS.values():
        for p in dashboard_json.panels(dash):
            for l in dashboard_json.links(p):
                m = re.fullmatch(re.escape(common.RUNBOOK_BASE_URL) + r"/(\w+)\.md", l["url"])
                if m:
                    assert m.group(1) in RUNBOOKS, f"{p['title']} links a missing runbook {m.group(1)}"
                    linked.add(m.group(1))
    assert linked == RUNBOOKS, f"alerts without a panel runbook link: {sorted(RUNBOOKS - linked)}"
