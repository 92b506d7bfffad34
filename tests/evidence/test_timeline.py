"""The timeline at volume: repeated events grouped (count, first/last, top commands), tables capped
with "N more in <file>", and every cell escaped so evidence cannot break or restyle the table
(the multi-line `perl -e` program that split a row in the field)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from governor.evidence import markdown, postmortem, timeline  # noqa: E402
from governor.evidence.scope import Scope  # noqa: E402
from governor.evidence.timewindow import Window  # noqa: E402

T0 = 1_800_000_000.0
POD = {"k8s.namespace.name": "payments", "k8s.pod.name": "ledger-0", "bcgov.workload.name": "ledger", "bcgov.tier": "oltp"}
PERL = ["perl", "-e", "print 1;\nprint 'a|b' if $x < 2;\r\n[click](http://evil) *bold* `code`"]


def exec_rec(args: list[str], pid: int, exe: str = "perl") -> dict:
    return {"body": "process exec", "attributes": {**POD, "process.pid": pid, "process.executable.name": exe,
                                                   "process.command_args": args}}


def cells(row: str) -> list[str]:
    """A GFM table row split at unescaped pipes."""
    assert row.startswith("| ") and row.endswith(" |"), row
    return re.split(r"(?<!\\)\|", row)[1:-1]


def test_a_multi_line_perl_argument_stays_one_row_of_six_cells() -> None:
    tl = timeline.Timeline()
    tl.log(exec_rec(PERL, 4242), T0)
    text = timeline.render(tl.groups(), "t")
    rows = [l for l in text.splitlines() if l.startswith("| 20")]
    assert len(rows) == 1
    (row,) = rows
    c = cells(row)
    assert len(c) == 6
    what = c[2]
    # every markup character escaped, line breaks visible, nothing left that starts a link/HTML/emphasis
    assert "⏎" in what and "\n" not in what and "\r" not in what
    assert r"a\|b" in what and r"\< 2" in what and r"\[click\](http://evil)" in what
    assert r"\*bold\*" in what and r"\`code\`" in what


def test_cell_escapes_backslash_first_and_cuts_long_text() -> None:
    assert markdown.cell("a\\|b") == "a\\\\\\|b"  # a\|b -> a\\\|b: the backslash itself cannot escape our escape
    long = markdown.cell("x" * 1000)
    assert len(long) == markdown.CELL_LIMIT and long.endswith("…")
    assert markdown.cell("bell\x07tab\tend") == "belltab end"


def test_repeated_execs_are_one_group_with_count_first_last_and_top_commands() -> None:
    tl = timeline.Timeline()
    for i in range(97):  # prime counts, so a miscount cannot hit the right number by chance
        tl.log(exec_rec(["pgbench", "-c", "4"], 1000 + i, "pgbench"), T0 + i)
    for i in range(13):
        tl.log(exec_rec(["psql", "-c", "select 1"], 5000 + i, "psql"), T0 + 50 + i)
    tl.log(exec_rec(["pgbench", "-i"], 9999, "pgbench"), T0 + 200)
    groups = tl.groups()
    assert [(g.kind, g.count) for g in groups] == [("exec", 98), ("exec", 13)]
    pg = groups[0]
    assert (pg.first, pg.last) == (T0, T0 + 200)
    assert pg.what() == "exec payments ledger-0 ledger oltp pgbench; top commands: pgbench -c 4 (x97); pgbench -i (x1)"
    row = next(l for l in timeline.render(groups, "t").splitlines() if "pgbench" in l)
    c = [x.strip() for x in cells(row)]
    assert c[1] == "exec" and c[3] == "98" and c[4].startswith("2027-01-15T08:03:20")


def test_single_events_keep_their_pid_and_rare_kinds_are_never_grouped() -> None:
    tl = timeline.Timeline()
    tl.log(exec_rec(["perl", "-v"], 77), T0)
    for i in range(3):
        tl.log({"body": "oom kill", "attributes": {**POD, "process.pid": 10 + i, "process.executable.name": "ledger"}}, T0 + i)
    g = tl.groups()
    assert [x.what() for x in g if x.kind == "exec"] == ["exec payments ledger-0 ledger oltp perl[77]: perl -v"]
    assert [x.kind for x in g].count("oom kill") == 3


def test_resets_on_a_logged_trace_are_not_listed_again_from_the_span() -> None:
    tl = timeline.Timeline()
    tl.log({"body": "tcp connection reset", "trace_id": "ab" * 16, "attributes": {**POD, "network.peer.address": "10.0.0.9",
                                                                                 "network.peer.port": 5432}}, T0)
    span = timeline.FlatSpan("tcp connect", "ab" * 16, "cd" * 8, T0 - 1, T0, POD, [(T0, "tcp.reset", {"bcgov.tcp.reset.direction": "received"})])
    other = timeline.FlatSpan("tcp connect", "ef" * 16, "cd" * 8, T0 - 1, T0 + 1, POD, [(T0 + 1, "tcp.reset", {"bcgov.tcp.reset.direction": "sent"})])
    tl.span(span)
    tl.span(other)
    assert [(g.kind, g.ref) for g in tl.groups()] == [("reset", "logs.jsonl"), ("reset", "spans.jsonl")]


def test_tables_are_capped_with_n_more_and_keep_the_important_rows() -> None:
    tl = timeline.Timeline()
    for i in range(600):  # 600 distinct workloads exec'ing: 600 groups
        tl.log({"body": "process exec", "attributes": {"k8s.pod.name": f"job-{i}", "process.command_args": ["run"]}}, T0 + i)
    tl.log({"body": "oom kill", "attributes": POD}, T0 + 599.5)
    groups = tl.groups()
    text = timeline.render(groups, "t", limit=500)
    rows = [l for l in text.splitlines() if l.startswith("| 20")]
    assert len(rows) == 500 and any("| oom kill |" in r for r in rows)
    assert "_101 more in [logs.jsonl](logs.jsonl) and [spans.jsonl](spans.jsonl)_" in text
    pm = postmortem.render(Window(T0, T0 + 700, 15), Scope(namespace="payments"), groups, ["timeline.md"], {})
    pm_rows = [l for l in pm.splitlines() if l.startswith("| 20")]
    assert len(pm_rows) == postmortem.TIMELINE_ROWS and any("| oom kill |" in r for r in pm_rows)
    assert f"_{601 - postmortem.TIMELINE_ROWS} more in [timeline.md](timeline.md)_" in pm
    assert "Evidence in the window: 600 exec, 1 oom kill." in pm


def test_groups_are_bounded() -> None:
    tl = timeline.Timeline()
    n = timeline.MAX_GROUPS + 101
    for i in range(n):
        tl.log({"body": "process exec", "attributes": {"k8s.pod.name": f"p{i}", "process.command_args": [f"c{i}"]}}, T0)
    groups = tl.groups()
    assert len(groups) == timeline.MAX_GROUPS + 1
    other = [g for g in groups if "further workloads" in g.text]
    assert len(other) == 1 and other[0].count == 101
    assert len(other[0].commands) == timeline.MAX_COMMANDS and other[0].other_commands == 101 - timeline.MAX_COMMANDS


def test_resets_group_by_workload_and_peer_host_not_by_pid_or_ephemeral_port() -> None:
    tl = timeline.Timeline()
    for i in range(11):
        tl.log({"body": "tcp connection reset", "trace_id": f"{i + 1:032x}",
                "attributes": {**POD, "process.pid": 100 + i, "process.executable.name": "postgres",
                               "network.peer.address": "10.0.0.9", "network.peer.port": 40000 + i}}, T0 + i)
    (g,) = tl.groups()
    assert g.count == 11 and (g.first, g.last) == (T0, T0 + 10)
    assert g.what() == f"connection reset, payments ledger-0 ledger oltp postgres <-> 10.0.0.9 (first trace {1:032x})"


def test_masks_are_escaped_like_the_rest_and_never_masked_again_after_escaping(tmp_path) -> None:
    """Trial 2: `-p\\*\\*\\*` came out escaped but `--password=***`, `?password=***` and
    `DB\\_PASSWORD=***` did not (the bundle's last pass re-masked the escaped mask), rendering as
    emphasis. Masks are made before escaping, and the last pass leaves escaped lines alone."""
    from governor.evidence.bundle import Bundle

    tl = timeline.Timeline()
    masked = [["/bin/echo", "--password=***"], ["curl", "http://x/?password=***"], ["env", "DB_PASSWORD=***", "/bin/true"],
              ["mysql", "-p***"]]
    for i, args in enumerate(masked):
        tl.log(exec_rec(args, 100 + i, args[0]), T0 + i)
    tl.log(exec_rec(["/bin/echo", "--token=S3cretMD"], 200, "echo"), T0 + 10)  # not masked by the agent: the cell masks it
    b = Bundle(tmp_path)
    b.add_text("timeline.md", timeline.render(tl.groups(), "t"))
    text = b.read("timeline.md").decode()
    for want in (r"--password=\*\*\*", r"?password=\*\*\*", r"DB\_PASSWORD=\*\*\*", r"-p\*\*\*", r"--token=\*\*\*"):
        assert want in text, (want, text)
    assert "S3cretMD" not in text
    assert not re.search(r"(?<!\\)\*", text), "an unescaped * renders as emphasis"
    # a line some producer wrote without markdown.cell is still masked by the last pass
    b.add_text("notes.md", "| raw | --password=S3cretRaw |")
    assert "S3cretRaw" not in b.read("notes.md").decode()


def test_refused_and_timed_out_connections_are_in_the_timeline_and_the_summary() -> None:
    """Trial 2: logs.jsonl had 3 `tcp connection refused` lines and spans.jsonl 2 refused spans,
    timeline.md had no refused row and the postmortem summary read only exec, exit and reset."""
    assert {"tcp connection refused", "tcp connection timeout"} <= timeline.BODIES  # read_logs parses them in full
    tl = timeline.Timeline()
    peer = {"network.peer.address": "127.0.0.1", "network.peer.port": 1}
    for i in range(3):  # three attempts from three client processes: one group
        tl.log({"body": "tcp connection refused", "trace_id": f"{i:032x}",
                "attributes": {**POD, **peer, "process.pid": 300 + i, "process.executable.name": "curl"}}, T0 + i)
    refused = {**POD, **peer, "bcgov.tcp.outcome": "refused", "process.executable.name": "curl", "process.pid": 399}
    tl.span(timeline.FlatSpan("tcp connect", f"{0:032x}", "cd" * 8, T0, T0, refused, []))  # logged already
    tl.span(timeline.FlatSpan("tcp connect", "ab" * 16, "cd" * 8, T0 + 5, T0 + 5, refused, []))  # its line is not in the window
    tl.span(timeline.FlatSpan("tcp connect", "ef" * 16, "cd" * 8, T0 + 7, T0 + 9,
                              {**POD, "network.peer.address": "10.9.9.9", "network.peer.port": 5432, "bcgov.tcp.outcome": "timeout"}, []))
    tl.span(timeline.FlatSpan("tcp connect", "12" * 16, "cd" * 8, T0 + 8, T0 + 8, {**POD, "bcgov.tcp.outcome": "normal"}, []))
    groups = tl.groups()
    assert [(g.kind, g.count, g.last) for g in groups] == [("refused", 4, T0 + 5), ("timeout", 1, T0 + 7)]
    assert groups[0].what() == f"connection refused, payments ledger-0 ledger oltp curl -> 127.0.0.1 (first trace {0:032x})"
    assert groups[1].what() == f"connection timeout, payments ledger-0 ledger oltp -> 10.9.9.9:5432 (trace {'ef' * 16})"
    rows = [l for l in timeline.render(groups, "t").splitlines() if l.startswith("| 20")]
    assert [cells(r)[1].strip() for r in rows] == ["refused", "timeout"]
    text = postmortem.render(Window(T0 - 60, T0 + 60, 15), Scope(), groups, [], {})
    assert "Evidence in the window: 4 refused, 1 timeout." in text
