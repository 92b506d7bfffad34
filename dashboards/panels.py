"""Panel constructors used by every bcgov dashboard: time series, latency (with exemplars), heatmap,
table. Each takes PromQL and returns a foundation-SDK builder."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import prometheus as pm

from dashboards import common

Links = Sequence[dashboard.DashboardLink]


def series(title: str, targets: Sequence[prometheus.Dataquery], *, unit: str = "short", description: str = "",
           links: Links = (), data_links: Links = (), width: int = 12) -> timeseries.Panel:
    """A time series panel on the Prometheus datasource variable."""
    p = (timeseries.Panel().title(title).description(description).datasource(common.PROM).unit(unit)
         .span(width).height(8).legend(cb.VizLegendOptions().show_legend(True).display_mode(cm.LegendDisplayMode.LIST)
                                       .placement(cm.LegendPlacement.BOTTOM)))
    for i, t in enumerate(targets):
        # Grafana keys query results (and exemplars) by refId: give each target its own.
        p = p.with_target(t.ref_id(chr(ord("A") + i)))
    if links:
        p = p.links(list(links))
    if data_links:
        p = p.data_links(list(data_links))
    return p


def latency(title: str, metric: str, selector: str, by: str, *, exemplars: bool, description: str = "", links: Links = (),
            width: int = 12) -> timeseries.Panel:
    """p50 and p99 of a `_seconds` histogram. With `exemplars` (a histogram whose buckets carry a
    span's trace_id, as connection durations do), they are queried and open their trace in Tempo;
    without (block I/O and run-queue latency have no spans), the panel offers no trace link."""
    targets = [
        common.query(f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))",
                     f"p{int(q * 100)} {{{{{by}}}}}", exemplar=exemplars)
        for q in (0.5, 0.99)
    ]
    return series(title, targets, unit="s", description=description, links=links,
                  data_links=[common.tempo_trace_link()] if exemplars else (), width=width)


def heat(title: str, metric: str, selector: str, *, exemplars: bool, description: str = "", links: Links = (),
         width: int = 12) -> heatmap.Panel:
    """A latency heatmap from histogram buckets; with `exemplars`, exemplars drawn on it open their trace."""
    q = common.query(f"sum by (le) (rate({metric}_bucket{{{selector}}}[$__rate_interval]))", "{{le}}",
                     exemplar=exemplars, fmt=pm.PromQueryFormat.HEATMAP)
    p = (heatmap.Panel().title(title).description(description).datasource(common.PROM).span(width).height(8)
         .with_target(q.ref_id("A")).calculate(False).y_axis(heatmap.YAxisConfig().unit("s"))
         .show_value(cm.VisibilityMode.NEVER))
    if exemplars:
        p = p.exemplars_color("rgba(255,0,255,0.7)").data_links([common.tempo_trace_link()])
    if links:
        p = p.links(list(links))
    return p


def top_table(title: str, expr: str, *, description: str = "", links: Links = (), data_links: Links = (),
              width: int = 12) -> table.Panel:
    """An instant-query table (top-N lists), one row per series."""
    q = common.query(expr, fmt=pm.PromQueryFormat.TABLE).instant().ref_id("A")
    p = table.Panel().title(title).description(description).datasource(common.PROM).span(width).height(8).with_target(q)
    if links:
        p = p.links(list(links))
    if data_links:
        p = p.data_links(list(data_links))
    return p
