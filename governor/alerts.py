"""The governor's own alert evaluation and the push to Alertmanager's v2 API.

`bcgov governor run --alertmanager URL` does not wait for Prometheus to evaluate the generated
rules: it raises the same alerts (same names, labels and runbook links) from each evaluation, so a
setup without the rules loaded still pages. Alerts are re-sent every evaluation with `endsAt` a few
intervals ahead, and resolved explicitly (endsAt = now) when their condition clears, as Prometheus
does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime

from governor import errors, http, rules
from governor.analysis import OVER, WARN, Report
from governor.budgets import Budgets

RESEND_INTERVALS = 4  # endsAt = now + this many evaluation intervals, like Prometheus' resend delay


@dataclasses.dataclass(frozen=True)
class Alert:
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        return dict(self.labels)["alertname"]

    def to_api(self, starts_at: float, ends_at: float, generator_url: str) -> dict[str, object]:
        return {"labels": dict(self.labels), "annotations": dict(self.annotations), "startsAt": _iso(starts_at),
                "endsAt": _iso(ends_at), "generatorURL": generator_url}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def _alert(name: str, tier: str, severity: str, summary: str, description: str, base: str, **extra: str) -> Alert:
    labels = {"alertname": name, "tier": tier, "severity": severity, "source": "bcgov-governor", **extra}
    ann = {"summary": summary, "description": description, "runbook_url": rules.runbook_url(base, name)}
    return Alert(tuple(sorted(labels.items())), tuple(sorted(ann.items())))


def evaluate(report: Report | None, budgets: Budgets, stale_tiers: set[str], runbook_base_url: str | None = None) -> list[Alert]:
    """Alerts that hold for this report. Tiers in `stale_tiers` get only the scrape-failure alert
    (their numbers are old; alerting on them again would repeat stale news)."""
    base = runbook_base_url or budgets.defaults.runbook_base_url
    out: list[Alert] = []
    for name, tier in budgets.tiers.items():
        desc = {r.alert: r.description for r in rules.tier_rules(tier, 0)}
        if name in stale_tiers or report is None:
            out.append(_alert("BcgovGovernorScrapeFailure", name, "warning",
                              f"The governor has no fresh series count for tier {name}", desc["BcgovGovernorScrapeFailure"], base))
            continue
        tr = next((t for t in report.tiers if t.name == name), None)
        if tr is None:
            continue
        if tr.series > tier.max_series:
            out.append(_alert("BcgovTierBudgetExceeded", name, "critical",
                              f"Tier {name} has {tr.series} series, over its budget of {tier.max_series}", desc["BcgovTierBudgetExceeded"], base))
        elif tr.status in (WARN, OVER):
            # OVER without exceeding max_series means a per-metric or per-label cap: still a warning.
            out.append(_alert("BcgovTierBudgetWarning", name, "warning",
                              f"Tier {name} has {tr.series} series ({(tr.usage or 0.0) * 100:.0f}% of its budget of {tier.max_series})"
                              + (f"; {tr.problems[0]}" if tr.problems else ""), desc["BcgovTierBudgetWarning"], base))
        g = tr.growth
        if tr.series <= tier.max_series and g is not None and g.seconds_to_budget is not None and g.seconds_to_budget <= rules.PREDICT_HORIZON_SECONDS:
            out.append(_alert("BcgovTierBudgetExhaustionPredicted", name, "warning",
                              f"Tier {name} is projected to reach its budget of {tier.max_series} in {g.hours_to_budget:.1f} h "
                              f"({g.series_per_day:+.0f} series/day)", desc["BcgovTierBudgetExhaustionPredicted"], base))
        for c in tr.label_explosions:
            out.append(_alert("BcgovLabelValueExplosion", name, "warning",
                              f"{c.metric} label {c.label} has {c.distinct_values} distinct values in tier {name} (cap {c.cap})",
                              desc["BcgovLabelValueExplosion"], base, metric=c.metric, label=c.label))
    return out


class AlertmanagerPusher:
    """Pushes alert sets to Alertmanager, remembering start times and resolving what cleared."""

    def __init__(self, url: str, options: http.HttpOptions | None = None, interval_seconds: float = 60.0,
                 generator_url: str = "", clock: Callable[[], float] = time.time) -> None:
        self.url = url.rstrip("/")
        self.interval_seconds = interval_seconds
        self.generator_url = generator_url
        self._clock = clock
        self._http = http.Http(options or http.HttpOptions(), "Alertmanager", "check --alertmanager URL")
        self._active: dict[Alert, float] = {}  # alert -> startsAt

    def push(self, current: list[Alert]) -> int:
        """Send firing alerts and resolve those no longer firing; returns the number sent."""
        now = self._clock()
        body = []
        for a in current:
            start = self._active.setdefault(a, now)
            body.append(a.to_api(start, now + RESEND_INTERVALS * self.interval_seconds, self.generator_url))
        for a in [a for a in self._active if a not in set(current)]:
            body.append(a.to_api(self._active.pop(a), now, self.generator_url))
        if not body:
            return 0
        try:
            resp = self._http.request("POST", f"{self.url}/api/v2/alerts", json=body)
        except errors.SourceError as exc:
            raise errors.AlertPushError(str(exc)) from exc
        if resp.status_code != 200:
            raise errors.AlertPushError(f"Alertmanager at {self.url} refused {len(body)} alerts: HTTP {resp.status_code} {errors.bounded(resp.text)}")
        return len(body)

    def close(self) -> None:
        self._http.close()
