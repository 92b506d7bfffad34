"""Every link in runbooks/*.md resolves to a file or a dashboard in the repository."""

from __future__ import annotations

import pathlib

import pytest

from dashboards import common

import dashboard_json
import runbook_links

RUNBOOKS = sorted((dashboard_json.ROOT / "runbooks").glob("*.md"))
UIDS = [d["uid"] for d in dashboard_json.committed().values()]


def test_there_are_runbooks() -> None:
    assert RUNBOOKS


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=[p.name for p in RUNBOOKS])
def test_runbook_links_resolve(runbook: pathlib.Path) -> None:
    assert runbook_links.unresolved(runbook, dashboard_json.ROOT, UIDS) == []


# The checker itself, on a runbook written here: what it accepts and what it reports.
CASES = [
    ("[next](BcgovTierBudgetExceeded.md#triage)", []),
    ("[dash](../dashboards/json/tiers-overview.json)", []),
    (f"[repo]({common.RUNBOOK_BASE_URL}/BcgovTierBudgetWarning.md)", []),
    (f"[grafana](https://grafana.example/d/{common.UID_WORKLOAD}?var-pod=x)", []),
    (f"[grafana](/d/{common.UID_BUDGET})", []),
    ("[elsewhere](https://prometheus.io/docs/)", []),
    ("`[not a link](missing.md)` in code", []),
    ("[gone](BcgovNoSuchAlert.md)", ["BcgovNoSuchAlert.md"]),
    ("[dash](../dashboards/json/nope.json)", ["../dashboards/json/nope.json"]),
    (f"[repo]({common.RUNBOOK_BASE_URL}/Nope.md)", [f"{common.RUNBOOK_BASE_URL}/Nope.md"]),
    ("[grafana](/d/no-such-uid)", ["/d/no-such-uid"]),
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
    assert runbook_links.unresolved(md, root, UIDS) == expected
