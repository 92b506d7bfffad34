"""Runbooks and dashboards point at each other: every link in runbooks/*.md resolves to a file,
a built dashboard or one of its panels; every runbook's triage opens a dashboard panel, and that
panel links back to the runbook (an alert's runbook is one click away from the panel showing it)."""

from __future__ import annotations

import pathlib
import re

import dashboard_json
import pytest
import runbook_links

from dashboards import common

RUNBOOKS = sorted((dashboard_json.ROOT / "runbooks").glob("*.md"))
PANELS = runbook_links.panels_by_uid(dashboard_json.committed())


def _triage(runbook: pathlib.Path) -> str:
    m = re.search(r"^## Triage\n(.*?)(?=^## |\Z)", runbook.read_text(encoding="utf-8"), re.S | re.M)
    assert m, f"{runbook.name} has no '## Triage' section"
    return m.group(1)


def _runbook_urls(panel: dict) -> set[str]:
    return {l["url"] for l in dashboard_json.links(panel) if l["url"].startswith(common.RUNBOOK_BASE_URL + "/")}


def test_there_are_runbooks_and_numbered_panels() -> None:
    assert RUNBOOKS
    assert all(PANELS[uid] for uid in (common.UID_OVERVIEW, common.UID_WORKLOAD, common.UID_NODE, common.UID_BUDGET))


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=[p.name for p in RUNBOOKS])
def test_runbook_links_resolve(runbook: pathlib.Path) -> None:
    assert runbook_links.unresolved(runbook, dashboard_json.ROOT, PANELS) == []


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=[p.name for p in RUNBOOKS])
def test_triage_opens_the_alerts_panel_which_links_back(runbook: pathlib.Path) -> None:
    linked = runbook_links.dashboard_links(_triage(runbook))
    assert linked, f"{runbook.name}: the triage section links no dashboard (/d/<uid>?viewPanel=<id>)"
    own = f"{common.RUNBOOK_BASE_URL}/{runbook.name}"
    back = [(uid, pid) for uid, pid in linked if pid is not None and own in _runbook_urls(PANELS[uid].get(pid, {}))]
    assert back, (f"{runbook.name}: none of the panels its triage opens ({linked}) links back to it; "
                  f"link the panel that shows the alert, and give that panel common.runbook_link(...)")


def test_every_runbook_link_on_a_panel_names_an_existing_runbook() -> None:
    names = {p.name for p in RUNBOOKS}
    for uid, panels in PANELS.items():
        for pid, panel in panels.items():
            for url in _runbook_urls(panel):
                assert url.rsplit("/", 1)[1] in names, f"{uid} panel {pid} ({panel['title']}) links {url}"


# The checker itself, on a runbook written here: what it accepts and what it reports.
CASES = [
    ("[next](BcgovTierBudgetExceeded.md#triage)", []),
    ("[dash](../dashboards/json/tiers-overview.json)", []),
    (f"[repo]({common.RUNBOOK_BASE_URL}/BcgovTierBudgetWarning.md)", []),
    (f"[grafana](https://grafana.example/d/{common.UID_WORKLOAD}?var-pod=x)", []),
    (f"[grafana](/d/{common.UID_BUDGET})", []),
    (f"[panel](/d/{common.UID_NODE}?viewPanel=6)", []),
    (f"[panel](https://grafana.example/d/{common.UID_BUDGET}?orgId=1&viewPanel=7)", []),
    ("[elsewhere](https://prometheus.io/docs/)", []),
    ("`[not a link](missing.md)` in code", []),
    ("[gone](BcgovNoSuchAlert.md)", ["BcgovNoSuchAlert.md"]),
    ("[dash](../dashboards/json/nope.json)", ["../dashboards/json/nope.json"]),
    (f"[repo]({common.RUNBOOK_BASE_URL}/Nope.md)", [f"{common.RUNBOOK_BASE_URL}/Nope.md"]),
    ("[grafana](/d/no-such-uid)", ["/d/no-such-uid"]),
    (f"[panel](/d/{common.UID_NODE}?viewPanel=999)", [f"/d/{common.UID_NODE}?viewPanel=999"]),
    (f"[panel](/d/{common.UID_NODE}?viewPanel=agent)", [f"/d/{common.UID_NODE}?viewPanel=agent"]),
    ("[escape](../../../etc/passwd)", ["../../../etc/passwd"]),
]


@pytest.mark.parametrize(("markdown", "expected"), CASES)
def test_checker(markdown: str, expected: list[str], tmp_path: pathlib.Path) -> None:
    # A fake repository root holding the runbook, with the real runbooks and dashboards linked in.
    root = tmp_path / "repo"
    (root / "runbooks").mkdir(parents=True)
    (root / "dashboards").mkdir()
    (root / "dashboards" / "json").symlink_to(dashboard_json.JSON_DIR)
    for rb in RUNBOOKS:
        (root / "runbooks" / rb.name).symlink_to(rb)
    md = root / "runbooks" / "Example.md"
    md.write_text(f"# Example\n\n{markdown}\n")
    assert runbook_links.unresolved(md, root, PANELS) == expected


def test_dashboard_links_are_found_only_outside_code() -> None:
    text = f"see [p](/d/{common.UID_NODE}?viewPanel=6) and `[q](/d/{common.UID_BUDGET})`"
    assert runbook_links.dashboard_links(text) == [(common.UID_NODE, 6)]
