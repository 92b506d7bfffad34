"""Remediation as code: config that applies the report's recommendations, each rule commented with
the exact series it saves.

Three targets:
- `prometheus-relabel`: `metric_relabel_configs` that blank one label on one metric (a `replace` to
  "" removes a label in Prometheus; scoping by `__name__` leaves the label on other metrics).
  Prometheus cannot sum at ingest: series that collide after the drop keep one sample per scrape
  (the rest count in `prometheus_target_scrapes_sample_duplicate_timestamp_total`). Right for labels
  nobody reads; for counters that dashboards sum, prefer the two aggregating targets.
- `otel-collector`: a `metricstransform` processor that aggregates the label away (sum for counters
  and histograms, max for gauges).
- `vm-stream-aggr`: VictoriaMetrics stream aggregation `without` the label.

Savings are computed on the whole metric (a relabel rule is not scoped to a tier), from the series
set, so the number in the comment is what Prometheus will hold after the rule takes effect.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import yaml

from governor.analysis import OVER, WARN, Report
from governor.inventory import Inventory
from governor.recommend import units_of
from governor.report import human_bytes

_FAMILY_SUFFIXES = ("_bucket", "_count", "_sum")


@dataclasses.dataclass
class Action:
    metric: str                  # the metric, or the histogram/summary family
    labels: tuple[str, ...]
    type: str | None
    tiers: tuple[str, ...]
    series_before: int
    series_after: int
    remaining_labels: tuple[str, ...]
    memory_bytes_saved: int
    metrics: tuple[str, ...] = ()  # the stored sample names the rule applies to (a family's every member)
    grouped: bool = False          # a histogram/summary family

    @property
    def saved(self) -> int:
        return self.series_before - self.series_after


@dataclasses.dataclass
class Plan:
    actions: list[Action]
    tiers: list[str]
    note: str

    @property
    def saved(self) -> int:
        return sum(a.saved for a in self.actions)


def plan(report: Report, inventory: Inventory, all_tiers: bool = False) -> Plan:
    """Actions for the recommendations of tiers at warn or over (every tier with `all_tiers`)."""
    chosen = [t for t in report.tiers if all_tiers or t.status in (WARN, OVER)]
    wanted: dict[str, tuple[set[str], set[str]]] = {}  # metric -> (labels, tiers)
    for t in chosen:
        for r in t.recommendations:
            labels, tiers = wanted.setdefault(r.metric, (set(), set()))
            labels.add(r.label)
            tiers.add(t.name)
    units = {u.name: u for u in units_of(inventory.metrics.values())}
    actions = []
    for metric in sorted(wanted):
        labels, tiers = wanted[metric]
        u = units[metric]
        after = sum(m.series_without(labels) for m in u.members)
        actions.append(Action(
            metric=metric, labels=tuple(sorted(labels)), type=u.members[0].type, tiers=tuple(sorted(tiers)),
            series_before=u.count, series_after=after,
            remaining_labels=tuple(lb for lb in u.label_names() if lb not in labels),
            memory_bytes_saved=(u.count - after) * report.bytes_per_series,
            metrics=tuple(u.metric_names), grouped=u.grouped,
        ))
    actions.sort(key=lambda a: (-a.saved, a.metric))
    if not chosen:
        note = "every tier is within its budget; pass --all to emit every recommendation anyway"
    elif not actions:
        note = f"no label to drop in {', '.join(t.name for t in chosen)}: every candidate is protected or saves nothing"
    else:
        note = f"tiers {', '.join(t.name for t in chosen)}"
    return Plan(actions, [t.name for t in chosen], note)


def _header(p: Plan, what: str) -> list[str]:
    return [f"# bcgov budget fix ({what}): {len(p.actions)} rule(s), saves {p.saved} series "
            f"({human_bytes(sum(a.memory_bytes_saved for a in p.actions))} head memory); {p.note}"]


def _comment(a: Action) -> str:
    return (f"{a.metric}: drop {', '.join(a.labels)}: {a.series_before} -> {a.series_after} series, saves {a.saved} "
            f"({human_bytes(a.memory_bytes_saved)}); tier {', '.join(a.tiers)}; type {a.type or 'unknown'}")


def _yaml_with_comments(key: str, items: Sequence[tuple[str, object]], header: list[str], extra: list[str]) -> str:
    """A YAML list under `key` whose items each follow a `# comment` line."""
    lines = header + extra + [f"{key}:" if items else f"{key}: []"]
    for comment, item in items:
        lines.append(f"  # {comment}")
        body = yaml.safe_dump([item], sort_keys=False, width=1000, default_flow_style=None).rstrip("\n").splitlines()
        lines += ["  " + ln for ln in body]
    return "\n".join(lines) + "\n"


def emit_prometheus_relabel(p: Plan) -> str:
    items = []
    for a in p.actions:
        for label in a.labels:
            items.append((_comment(a) if label == a.labels[0] else f"{a.metric}: and {label}", {
                "source_labels": ["__name__"],
                # Every stored name of a family, so the histogram/summary stays whole.
                "regex": "|".join(a.metrics or (a.metric,)),
                "target_label": label,
                "replacement": "",
                "action": "replace",
            }))
    extra = ["# Add under the scrape job(s) of these metrics (ServiceMonitor: metricRelabelings) and reload.",
             "# Colliding series keep one sample per scrape: right for labels nobody reads; to keep sums of",
             "# counters, use --emit otel-collector or --emit vm-stream-aggr, or fix the exporter."]
    return _yaml_with_comments("metric_relabel_configs", items, _header(p, "prometheus-relabel"), extra)


def _family(name: str, type_: str | None) -> str:
    if type_ in ("histogram", "summary", "gaugehistogram"):
        for suffix in _FAMILY_SUFFIXES:
            if name.endswith(suffix):
                return name[: -len(suffix)]
    return name


def emit_otel_collector(p: Plan) -> str:
    transforms = []
    for a in p.actions:
        # The Prometheus receiver turns a histogram/summary family into one metric named after the
        # family, and may strip `_total`: match both spellings. job/instance become resource
        # attributes there and le/quantile are the points' buckets, so none is a label to keep.
        family = a.metric if a.grouped else _family(a.metric, a.type)
        base = family[: -len("_total")] if family.endswith("_total") and not a.grouped else family
        keep = [lb for lb in a.remaining_labels if lb not in ("job", "instance", "le", "quantile")]
        transforms.append((_comment(a), {
            "include": f"^{base}$" if a.grouped else f"^{base}(_total)?$",
            "match_type": "regexp",
            "action": "update",
            "operations": [{"action": "aggregate_labels", "label_set": keep,
                            "aggregation_type": "max" if a.type == "gauge" else "sum"}],
        }))
    head = _header(p, "otel-collector") + [
        "# OpenTelemetry Collector (contrib) processor; add `metricstransform/bcgov` to the metrics pipeline.",
        "processors:", "  metricstransform/bcgov:"]
    body = _yaml_with_comments("transforms", transforms, [], [])
    return "\n".join(head) + "\n" + "".join("    " + ln + "\n" for ln in body.splitlines())


def emit_vm_stream_aggr(p: Plan) -> str:
    items = []
    for a in p.actions:
        output = "max" if a.type == "gauge" else "total"
        items.append((_comment(a), {
            "match": (f'{{__name__=~"{"|".join(a.metrics)}"}}' if len(a.metrics) > 1 else f'{{__name__="{a.metric}"}}'),
            "interval": "1m",
            "without": list(a.labels),
            "outputs": [output],
            "keep_metric_names": True,
        }))
    lines = _header(p, "vm-stream-aggr") + [
        "# vmagent -streamAggr.config (or -remoteWrite.streamAggr.config); counters use `total`, gauges `max`."]
    body = _yaml_with_comments("rules", items, [], [])
    # The file is a bare list: drop the `rules:` key and dedent.
    items_text = "\n".join(ln[2:] for ln in body.splitlines()[1:])
    return "\n".join(lines) + "\n" + (items_text + "\n" if items else "[]\n")


EMITTERS: dict[str, Callable[[Plan], str]] = {
    "prometheus-relabel": emit_prometheus_relabel,
    "otel-collector": emit_otel_collector,
    "vm-stream-aggr": emit_vm_stream_aggr,
}
