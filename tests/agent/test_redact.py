"""Secrets never leave the node: the rule table of agent/redaction/redact.py against the case list
tests/agent/redaction/cases.yaml (one case or more per rule; users add theirs there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.redaction.redact import MASK, RULES, redact_argv, redact_command_line, redact_text

CASES_FILE = Path(__file__).parent / "redaction" / "cases.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text())


def _id(case: dict[str, Any]) -> str:
    return f"{case['rule']}:{' '.join(case['argv'])[:40]}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_case_list(case: dict[str, Any]) -> None:
    got = redact_argv(case["argv"], arg_capacity=case.get("capacity"))
    assert got == case["expected"]
    assert redact_argv(got, arg_capacity=case.get("capacity")) == got  # idempotent: the evidence export redacts again


def test_every_rule_has_a_case_and_every_case_names_a_rule() -> None:
    named = {c["rule"] for c in CASES}
    assert set(RULES) - named == set(), "rules without a case in cases.yaml"
    assert named - set(RULES) == set(), "cases naming no rule"
    for c in CASES:
        assert len(c["argv"]) == len(c["expected"]), _id(c)


@pytest.mark.parametrize("argv", [c["argv"] for c in CASES if c.get("issue") == 15], ids=lambda a: a[0])
def test_the_six_shapes_of_the_issue_no_longer_leak(argv: list[str]) -> None:
    assert not any("S3cret" in a for a in redact_argv(argv))


def test_the_issue_lists_six_shapes() -> None:
    assert len([c for c in CASES if c.get("issue") == 15]) == 6


def test_an_argument_cut_by_the_probe_inside_a_url_password_is_masked() -> None:
    cut = "postgres://bob:averyveryverylongpasswordthatwascutbytheprobexxxxxxxxx"[:63]
    assert "averyvery" not in redact_argv(["psql", cut], arg_capacity=64)[1]
    # the same text, not cut, has no userinfo to mask and stays readable
    assert redact_text("http://minio:9000/bucket") == "http://minio:9000/bucket"


def test_flag_at_end_of_argv_masks_nothing_else() -> None:
    assert redact_argv(["app", "--password"]) == ["app", "--password"]


def test_a_command_line_cut_mid_quote_is_still_redacted() -> None:
    cut = "redis-cli -a 'S3cret-but-cut"  # the probe keeps 63 bytes of each argument
    assert "S3cret" not in redact_command_line(cut, truncated=True)


def test_a_secret_the_shell_spells_with_escapes_is_masked_even_if_the_spelling_changes() -> None:
    out = redact_command_line(r"mysql -p'S3\cret' db")
    assert "S3" not in out and MASK in out


def test_other_text_stays_readable() -> None:
    for argv in (["ls", "-la", "/tmp"], ["ps", "-p", "42"], ["nc", "-u", "10.0.0.1", "53"], []):
        assert redact_argv(argv) == argv
