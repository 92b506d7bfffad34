"""Alerts that fired in the window: Alertmanager's `/api/v2/alerts` and Prometheus' `ALERTS` series.

Alertmanager knows annotations (runbook_url) but only holds active and recently resolved alerts;
`ALERTS` in Prometheus keeps the firing history for the retention period but has labels only. Both
are kept, each marked with its source, and a runbook link is looked up for every alert (its own
annotation, else the rule's annotation from `/api/v1/rules`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from governor import errors as gov_errors
from governor import http
from governor.evidence.errors import SourceMissing
from governor.evidence.promrange import RangeClient
from governor.evidence.scope import Scope
from governor.evidence.timewindow import Window, parse_time, rfc3339


@dataclasses.dataclass
class Alert:
    """One firing period of one alert."""

    name: str
    source: str  # "alertmanager" or "prometheus"
    starts: float
    ends: float | None  # None: still firing at the end of the window
    labels: dict[str, str]
    annotations: dict[str, str]
    runbook_url: str | None
    state: str = "firing"

    def to_dict(self) -> dict[str, Any]:
        return {"alertname": self.name, "source": self.source, "state": self.state,
                "starts_at": rfc3339(self.starts), "ends_at": rfc3339(self.ends) if self.ends else None,
                "runbook_url": self.runbook_url, "labels": self.labels, "annotations": self.annotations}


def in_scope(labels: dict[str, str], scope: Scope) -> bool:
    """An alert is in scope unless it names another tier/namespace/pod; platform-wide alerts stay."""
    return all(labels.get(k, v) == v for k, v in scope.labels().items())


def from_alertmanager(base_url: str, window: Window, scope: Scope, options: http.HttpOptions | None = None) -> list[Alert]:
    """Alerts from Alertmanager v2 whose firing overlapped the window."""
    client = http.Http(options or http.HttpOptions(), "Alertmanager",
                       "check that it is running and the URL is right, or pass --alertmanager URL")
    url = base_url.rstrip("/") + "/api/v2/alerts"
    try:
        resp = client.request("GET", url)
        if resp.status_code != 200:
            raise SourceMissing("alertmanager", f"{url} answered HTTP {resp.status_code}")
        body = resp.json()
    except gov_errors.GovernorError as exc:
        raise SourceMissing("alertmanager", str(exc)) from exc
    except ValueError as exc:
        raise SourceMissing("alertmanager", f"{url} did not answer JSON") from exc
    finally:
        client.close()
    out: list[Alert] = []
    for a in body:
        labels, ann = dict(a.get("labels") or {}), dict(a.get("annotations") or {})
        starts = parse_time(a["startsAt"], window.end)
        ends = parse_time(a["endsAt"], window.end) if a.get("endsAt") else None
        if starts > window.end or (ends is not None and ends < window.start) or not in_scope(labels, scope):
            continue
        state = (a.get("status") or {}).get("state", "active")
        out.append(Alert(labels.get("alertname", "?"), "alertmanager", starts, ends if ends and ends <= window.end else None,
                         labels, ann, ann.get("runbook_url") or labels.get("runbook_url"), state))
    return out


def _rule_runbooks(prom: RangeClient) -> dict[str, str]:
    """alertname -> runbook_url from the loaded rules; empty when the API has no rules."""
    try:
        data = prom._api("rules", {"type": "alert"})
    except SourceMissing:
        return {}
    books: dict[str, str] = {}
    for g in data.get("groups", []):
        for r in g.get("rules", []):
            url = (r.get("annotations") or {}).get("runbook_url")
            if url:
                books.setdefault(r.get("name", ""), url)
    return books


def from_prometheus(prom: RangeClient, window: Window, scope: Scope) -> tuple[list[Alert], str]:
    """Firing periods from the `ALERTS` series (query_range); returns the alerts and the PromQL."""
    expr = 'ALERTS{alertstate="firing"}'
    books = _rule_runbooks(prom)
    out: list[Alert] = []
    for s in prom.query_range(expr, window):
        labels = {k: v for k, v in s.labels.items() if k not in ("__name__", "alertstate")}
        if not in_scope(labels, scope):
            continue
        for start, end in firing_periods([t for t, v in s.points if v > 0], window.step):
            ends = None if end >= window.end - window.step else end
            name = labels.get("alertname", "?")
            out.append(Alert(name, "prometheus", start, ends, labels, {}, labels.get("runbook_url") or books.get(name)))
    return out, expr


def firing_periods(times: list[float], step: int) -> list[tuple[float, float]]:
    """Contiguous runs of sample times (gaps over one step split them) as (start, end) pairs."""
    periods: list[tuple[float, float]] = []
    for t in sorted(times):
        if periods and t - periods[-1][1] <= step * 1.5:
            periods[-1] = (periods[-1][0], t)
        else:
            periods.append((t, t))
    return periods
