"""Range queries against a Prometheus-compatible API, over the governor's HTTP client (auth,
TLS, retries and error wording are shared with `bcgov budget`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from governor import errors as gov_errors
from governor import http
from governor.evidence.errors import SourceMissing
from governor.evidence.timewindow import Window


@dataclasses.dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and (unix time, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]

    def legend(self) -> str:
        """Labels as `{a="x",b="y"}` (the metric name left out), stable across runs."""
        items = sorted((k, v) for k, v in self.labels.items() if k != "__name__")
        return "{" + ",".join(f'{k}="{v}"' for k, v in items) + "}"


class RangeClient:
    """`query_range` against `base_url`; every failure becomes `SourceMissing` naming the source."""

    def __init__(self, base_url: str, options: http.HttpOptions | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http.Http(options or http.HttpOptions(), "Prometheus",
                               "check that it is running and the URL is right, or pass --prometheus URL")

    def close(self) -> None:
        self._http.close()

    def _api(self, path: str, params: dict[str, Any]) -> Any:
        url = f"{self.base_url}/api/v1/{path}"
        try:
            resp = self._http.request("POST", url, data=params)
            body = resp.json()
        except gov_errors.GovernorError as exc:
            raise SourceMissing("prometheus", str(exc)) from exc
        except ValueError as exc:
            raise SourceMissing("prometheus", f"{url} did not answer JSON (HTTP {resp.status_code})") from exc
        if body.get("status") != "success":
            raise SourceMissing("prometheus", f"{url} failed: {gov_errors.bounded(body.get('error') or body)}")
        return body["data"]

    def ready(self) -> None:
        """Raise SourceMissing unless the API answers a trivial query (one clear message early)."""
        self._api("query", {"query": "1"})

    def query_range(self, expr: str, window: Window) -> list[Series]:
        data = self._api("query_range", {"query": expr, "start": f"{window.start:.3f}",
                                         "end": f"{window.end:.3f}", "step": str(window.step)})
        if data.get("resultType") != "matrix":
            raise SourceMissing("prometheus", f"query_range {expr!r} returned {data.get('resultType')}, expected a matrix")
        return [Series(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]
