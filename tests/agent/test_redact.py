"""Secrets never leave the node: argv and text redaction, table-driven."""

from __future__ import annotations

import pytest

from agent.redact import redact_argv, redact_text


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["psql", "--password", "hunter2"], ["psql", "--password", "***"]),
        (["app", "--token=abc123"], ["app", "--token=***"]),
        (["app", "--db-password=x", "--port", "5432"], ["app", "--db-password=***", "--port", "5432"]),
        (["env", "PGPASSWORD=s3cret", "AWS_SECRET_ACCESS_KEY=zz", "HOME=/root"], ["env", "PGPASSWORD=***", "AWS_SECRET_ACCESS_KEY=***", "HOME=/root"]),
        (["spark-submit", "--conf", "spark.hadoop.fs.s3a.secret.key=abc"], ["spark-submit", "--conf", "spark.hadoop.fs.s3a.secret.key=***"]),
        (["psql", "postgres://bob:pw@db:5432/x"], ["psql", "postgres://bob:***@db:5432/x"]),
        (["curl", "-H", "Authorization: Bearer abcdefgh123"], ["curl", "-H", "Authorization: Bearer ***"]),
        (["psql", "host=db user=a password=xyz dbname=b"], ["psql", "host=db user=a password=*** dbname=b"]),
        (["mc", "alias", "set", "minio", "http://minio:9000", "--api-key", "K"], ["mc", "alias", "set", "minio", "http://minio:9000", "--api-key", "***"]),
        (["ls", "-la", "/tmp"], ["ls", "-la", "/tmp"]),
        ([], []),
    ],
)
def test_redact_argv(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


def test_an_argument_cut_by_the_probe_inside_a_url_password_is_masked() -> None:
    cut = "postgres://bob:averyveryverylongpasswordthatwascutbytheprobexxxxxxxxx"[:63]
    assert "averyvery" not in redact_argv(["psql", cut], arg_capacity=64)[1]
    # the same text, not cut, has no userinfo to mask and stays readable
    assert redact_text("http://minio:9000/bucket") == "http://minio:9000/bucket"


def test_flag_at_end_of_argv_masks_nothing_else() -> None:
    assert redact_argv(["app", "--password"]) == ["app", "--password"]
