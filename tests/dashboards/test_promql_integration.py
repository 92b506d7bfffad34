"""Every panel's PromQL (and every variable's selector) parses in a real Prometheus (Debian 2.42).

Template variables are substituted with `.*` and Grafana's interval variables with `1m`; the
Prometheus scrapes an empty target so it runs its ordinary query path, and any parse or type error
comes back as HTTP 400, which fails the test with Prometheus' own message."""

from __future__ import annotations

import re

import dashboard_json
import pytest
import requests
import servers

pytestmark = pytest.mark.integration

EXPRS = sorted({(name, title, expr) for name, dash in dashboard_json.committed().items()
                for title, expr in dashboard_json.exprs(dash)})
_LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


def _variable_selectors() -> list[str]:
    out = []
    for dash in dashboard_json.committed().values():
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                m = _LABEL_VALUES.match(v["query"])
                assert m and m.group(1), f"variable {v['name']}: unexpected query {v['query']!r}"
                out.append(m.group(1))
    return sorted(set(out))


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("prom")
    with servers.serve_exposition("") as target, \
         servers.start_prometheus(servers.scrape_config(target.target, job="empty"), tmp) as prom:
        yield prom


def _parse_errors(prom: servers.PrometheusServer, exprs: list[str]) -> list[str]:
    errors = []
    for expr in exprs:
        r = requests.get(f"{prom.url}/api/v1/query", params={"query": dashboard_json.substitute(expr)}, timeout=10)
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            errors.append(f"{expr}\n  -> {body.get('errorType')}: {body.get('error')}")
    return errors


def test_there_are_queries_to_check() -> None:
    assert len(EXPRS) >= 30


def test_every_panel_query_parses(prometheus: servers.PrometheusServer) -> None:
    errors = _parse_errors(prometheus, [e for _, _, e in EXPRS])
    assert not errors, "\n".join(errors)


def test_every_variable_selector_parses(prometheus: servers.PrometheusServer) -> None:
    errors = _parse_errors(prometheus, _variable_selectors())
    assert not errors, "\n".join(errors)


def test_a_broken_query_is_caught(prometheus: servers.PrometheusServer) -> None:
    """The check has teeth: an unbalanced expression is reported, not accepted."""
    assert _parse_errors(prometheus, ['sum by (tier (rate(bcgov_tcp_connections{tier=~"$tier"}[$__rate_interval]))'])
