"""The real check of issue 5: every panel's PromQL against a real Prometheus that scraped a real
agent (every probe, this kernel) while real workloads ran in a pod-shaped cgroup (tests/realstack.py:
connections, resets, a refused connect, exec/exit, two real OOM kills; pod identity from a STAND-IN
kube-apiserver). Template variables get the values that select that pod, as a user drilling into it
would pick them; every query must parse and the key panels must return data, most of it non-zero.

Not expected to return data here, and so only parsed: retransmits (loopback does not retransmit),
the governor's panels (no governor runs in this stack) and unresolved identities (every event of the
pod resolves). Block I/O and run-queue latency are probes other work adds: their panels are
required to return data only when the agent exported those metrics when the stack started
(`RealStack.optional_metrics`), and parsed otherwise.
"""

from __future__ import annotations

import math
import re
from typing import Any

import dashboard_json
import pytest
import realstack
import requests

from dashboards import common

pytestmark = [pytest.mark.ebpf, pytest.mark.integration]

# What a user picks to look at the test's pod (node as the PodMonitor sets it).
VARIABLES = {"node": realstack.NODE, "tier": realstack.TIER, "namespace": realstack.NAMESPACE,
             "workload": realstack.WORKLOAD_NAME, "pod": realstack.POD}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")

# (dashboard uid, panel title) -> must every returned value be > 0 (False: present is enough).
KEY_PANELS: dict[tuple[str, str], bool] = {
    (common.UID_OVERVIEW, "Connections / s by tier"): True,
    (common.UID_OVERVIEW, "Connections / s by tier and outcome"): True,
    (common.UID_OVERVIEW, "Resets / s by tier"): True,
    (common.UID_OVERVIEW, "Connection duration p50 / p99 by tier"): True,
    (common.UID_OVERVIEW, "OOM kills by tier"): True,
    (common.UID_OVERVIEW, "Agent: probes down and records lost"): False,  # lost/s is 0: no loss
    (common.UID_WORKLOAD, "Connections / s by direction and outcome"): True,
    (common.UID_WORKLOAD, "Resets / s by peer"): True,
    (common.UID_WORKLOAD, "Connection duration p50 / p99"): True,
    (common.UID_WORKLOAD, "Connection duration heatmap (exemplars open Tempo)"): False,  # empty buckets are 0
    (common.UID_WORKLOAD, "Process execs / s"): True,
    (common.UID_WORKLOAD, "Process exits / s on the node by status"): False,  # node-wide: some statuses idle (below)
    (common.UID_WORKLOAD, "OOM kills"): True,
    (common.UID_NODE, "Retransmits and resets / s by node"): False,  # retransmits 0, resets > 0 (below)
    (common.UID_NODE, "Agent probes up by node"): True,
    (common.UID_NODE, "Agent records received and lost / s"): False,  # received > 0, lost 0
}
OPTIONAL_PANELS = {
    "bcgov_block_io_latency_seconds": [(common.UID_WORKLOAD, "Block I/O latency p50 / p99 by device"),
                                       (common.UID_NODE, "Block I/O latency p50 / p99 by node and device"),
                                       (common.UID_NODE, "Block I/O latency heatmap")],
    "bcgov_runqueue_latency_seconds": [(common.UID_WORKLOAD, "Run-queue latency p50 / p99 by node"),
                                       (common.UID_NODE, "Run-queue latency p50 / p99 by node"),
                                       (common.UID_NODE, "Run-queue latency heatmap")],
}


def substitute(expr: str, window_s: int) -> str:
    """Grafana's interval variables -> one window covering the whole workload; label variables ->
    the test pod's values (Grafana writes a single selected value as is, a regex of one literal)."""
    for name in ("$__rate_interval", "$__interval", "$__range"):
        expr = expr.replace(name, f"{window_s}s")

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in VARIABLES:
            raise AssertionError(f"no test value for template variable ${name} in {expr}")
        return VARIABLES[name]

    return _VAR.sub(one, expr)


@pytest.fixture(scope="module")
def results(real_stack: realstack.RealStack) -> dict[tuple[str, str], list[tuple[str, list[dict[str, Any]]]]]:
    """(uid, panel title) -> [(query run, result vector)] for every target of every panel, all
    evaluated at one instant after the last round was scraped (before the stack's agent stopped)."""
    at = real_stack.marks["final"]
    window = math.ceil(at - real_stack.t0) + 5
    out: dict[tuple[str, str], list[tuple[str, list[dict[str, Any]]]]] = {}
    errors = []
    for dash in dashboard_json.committed().values():
        for panel in dashboard_json.panels(dash):
            for target in panel.get("targets", []):
                q = substitute(target["expr"], window)
                r = requests.get(f"{real_stack.prom.url}/api/v1/query", params={"query": q, "time": f"{at:.3f}"}, timeout=10)
                body = r.json()
                if r.status_code != 200 or body.get("status") != "success":
                    errors.append(f"{dash['uid']} / {panel['title']}: {q}\n  -> {body.get('errorType')}: {body.get('error')}")
                    continue
                out.setdefault((dash["uid"], panel["title"]), []).append((q, body["data"]["result"]))
    assert not errors, "\n".join(errors)
    return out


def _values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result]


def test_every_panel_query_runs(results: dict) -> None:
    panels = {(d["uid"], p["title"]) for d in dashboard_json.committed().values()
              for p in dashboard_json.panels(d) if p.get("targets")}
    assert set(results) == panels
    assert sum(len(v) for v in results.values()) >= 30


@pytest.mark.parametrize(("key", "positive"), sorted(KEY_PANELS.items()), ids=[f"{u}:{t}" for u, t in sorted(KEY_PANELS)])
def test_key_panel_returns_data(results: dict, key: tuple[str, str], positive: bool) -> None:
    runs = results[key]
    with_data = [(q, r) for q, r in runs if r]
    assert with_data, f"{key[1]}: no target returned data:\n" + "\n".join(q for q, _ in runs)
    for q, r in with_data:
        values = _values(r)
        assert all(math.isfinite(v) for v in values), f"{q} -> {r}"
        if positive:
            assert all(v > 0 for v in values), f"{q} -> {r}"


def test_the_pods_traffic_is_labelled_and_counted(results: dict) -> None:
    (q, r), = results[(common.UID_OVERVIEW, "Connections / s by tier and outcome")]
    outcomes = {s["metric"]["outcome"] for s in r}
    assert {"normal", "reset", "refused"} <= outcomes, q  # the kernel counts a refused connect as the span does
    assert {s["metric"]["tier"] for s in r} == {realstack.TIER}
    (q, r), = results[(common.UID_WORKLOAD, "Resets / s by peer")]
    assert {s["metric"]["direction"] for s in r} == {"sent", "received"}, q
    (q, r), = results[(common.UID_WORKLOAD, "Process exits / s on the node by status")]
    # the exec exits 3 (error); the OOM victim is killed by a signal
    rates = {s["metric"]["status"]: float(s["value"][1]) for s in r}
    assert rates.get("error", 0) > 0 and rates.get("signaled", 0) > 0, (q, rates)
    resets = [r for q, r in results[(common.UID_NODE, "Retransmits and resets / s by node")] if "resets" in q]
    assert resets and resets[0] and all(v > 0 for v in _values(resets[0]))


def test_latency_quantiles_are_plausible(results: dict) -> None:
    p50, p99 = results[(common.UID_WORKLOAD, "Connection duration p50 / p99")]
    for (q, r) in (p50, p99):
        assert r, q
        # loopback request/response connections: well under a second each
        assert all(0 < v < 1.0 for v in _values(r)), f"{q} -> {r}"


def test_every_loaded_probe_is_up_on_the_node(results: dict, real_stack: realstack.RealStack) -> None:
    (q, r), = results[(common.UID_NODE, "Agent probes up by node")]
    up = {s["metric"]["probe"]: float(s["value"][1]) for s in r}
    assert up == {rep.name: 1.0 for rep in real_stack.agent.reports}, q
    assert {s["metric"]["node"] for s in r} == {realstack.NODE}
    down, _lost = results[(common.UID_OVERVIEW, "Agent: probes down and records lost")]
    assert down[1] == [], f"{down[0]} -> a probe is down"


def test_optional_probe_panels_return_data_when_exported(results: dict, real_stack: realstack.RealStack) -> None:
    """Block I/O and run-queue panels: required once the agent exports the metric (see module doc)."""
    for metric in real_stack.optional_metrics:
        for key in OPTIONAL_PANELS[metric]:
            assert any(r for _, r in results[key]), f"{metric} is exported but {key[1]} is empty"


def test_variables_offer_the_pods_values(real_stack: realstack.RealStack) -> None:
    """Each label variable's query lists the value the test selects, so a user can pick it."""
    checked = 0
    for dash in dashboard_json.committed().values():
        for v in dash["templating"]["list"]:
            if v["type"] != "query" or v["name"] not in VARIABLES or "bcgov_governor_" in v["query"]:
                continue  # the governor's variables need a governor, which this stack does not run
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"])
            assert m, v["query"]
            selector = substitute(m.group(1), 60)
            values = real_stack.prom.api("label/" + m.group(2) + "/values", **{"match[]": selector})
            assert VARIABLES[v["name"]] in values, f"{dash['uid']} ${v['name']}: {selector} offers {values}"
            checked += 1
    assert checked >= 10


def test_latency_exemplars_carry_trace_ids_of_real_spans(real_stack: realstack.RealStack) -> None:
    """What a click on an exemplar opens: the exemplar's trace_id is a span the agent wrote for the
    pod (one event, three pillars), for every exemplar-enabled query on the pod's connections."""
    spans = {sp["traceId"] for sp in real_stack.pod_spans()}
    checked = 0
    for dash in dashboard_json.committed().values():
        for panel in dashboard_json.panels(dash):
            for target in panel.get("targets", []):
                if not target.get("exemplar") or "bcgov_tcp_connection_duration_seconds" not in target["expr"]:
                    continue
                q = substitute(target["expr"], 60)
                data = real_stack.prom.api("query_exemplars", query=q, start=f"{real_stack.t0:.3f}",
                                           end=f"{real_stack.marks['final']:.3f}")
                trace_ids = [e["labels"]["trace_id"] for series in data for e in series["exemplars"]]
                assert trace_ids, f"{dash['uid']} / {panel['title']}: no exemplars for {q}"
                assert set(trace_ids) <= spans, f"exemplar trace_ids without a span: {set(trace_ids) - spans}"
                checked += 1
    assert checked >= 4


def test_a_real_spans_trace_to_metrics_link_finds_its_workloads_series(real_stack: realstack.RealStack) -> None:
    """What a click on "Connections / s" under a span opens (Tempo tracesToMetrics, provisioned): the
    query Grafana builds from the span's attributes finds the pod's connection series in the
    Prometheus that scraped the agent, joined on the labels the agent really exports."""
    import yaml
    from test_provisioning import PROV_DIR, expanded, grafana_tags

    doc = yaml.safe_load((PROV_DIR / "datasources" / "bcgov.yaml").read_text())
    t2m = next(d for d in doc["datasources"] if d["type"] == "tempo")["jsonData"]["tracesToMetrics"]
    span = real_stack.pod_spans()[0]
    attrs = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
    tags = grafana_tags(t2m["tags"], attrs)
    assert f'workload="{realstack.WORKLOAD_NAME}"' in tags and f'namespace="{realstack.NAMESPACE}"' in tags, tags
    at = real_stack.marks["final"]
    for q in t2m["queries"]:
        expr = expanded(q["query"]).replace("$__tags", tags).replace("[1m]", f"[{math.ceil(at - real_stack.t0) + 5}s]")
        r = requests.get(f"{real_stack.prom.url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=10)
        result = r.json()["data"]["result"]
        assert result and all(float(v["value"][1]) > 0 for v in result), (expr, result)
