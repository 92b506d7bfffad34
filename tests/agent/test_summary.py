"""The live summary is built from the probes' declared tallies (probes/spec.py Tally): the same
caption and top-talkers table as when it knew each event type, for any set of specs."""

from __future__ import annotations

import io

from agent_harness import connection
from rich.console import Console

from agent.summary import Summary
from probes import oom, process, registry, tcp_lifecycle
from probes.events import OomKill, ProcessExec, ProcessExit


def _text(summary: Summary) -> str:
    """Title, caption and rows as the terminal shows them (wide enough not to wrap)."""
    table = summary.render(lost=3, probes_up=5, probes_total=7, elapsed_s=12.0, skipped=2)
    out = io.StringIO()
    Console(file=out, width=400).print(table)
    return f"{table.title}\n{table.caption}\n{out.getvalue()}"


def test_every_probes_counts_top_talkers_and_the_last_oom_kills() -> None:
    summary = Summary(registry.ALL)
    tcp = summary.observer(tcp_lifecycle.SPEC)
    procs = summary.observer(process.SPEC)
    kills = summary.observer(oom.SPEC)
    assert tcp and procs and kills and summary.observer(registry.get("runqueue")) is None
    tcp(connection())                                           # psql: 30 bytes, 2 retransmits
    tcp(connection(outcome="refused", established_ns=0, bytes_sent=None, bytes_received=None, retransmits=0,
                   retransmit_ns=()))
    tcp(connection(comm="nginx", pid=7, reset_received=True, outcome="reset", retransmits=0, retransmit_ns=()))
    procs(ProcessExec(1, 9, 0, "sh", "/bin/sh", ("sh",), False, 5))
    procs(ProcessExit(2, 9, "sh", 5, 1, "exited", 0, None))
    procs(ProcessExit(3, 10, "sh", 5, 1, "exited", 1, None))
    for pid in range(1, 8):
        kills(OomKill(4, pid, f"hog{pid}", 5, pid, 0, 1, 1, 1, 1))
    text = _text(summary)
    assert "bcgov agent: 5/7 probes up, 12s, lost records 3, skipped runs 2" in text
    assert ("failed connects 1  resets 1  retransmits 2  execs 1  exits 2  "
            "OOM kills 7 (last: hog3[3], hog4[4], hog5[5], hog6[6], hog7[7])") in text
    rows = [[c for c in line.split() if c != "│"] for line in text.splitlines() if "psql" in line or "nginx" in line]
    assert [r for r in rows if "psql" in r][0][-3:] == ["42", "2", "30"]   # pid, connections, bytes
    assert [r for r in rows if "nginx" in r][0][-3:] == ["7", "1", "30"]


def test_counts_show_zero_before_any_event() -> None:
    assert ("failed connects 0  resets 0  retransmits 0  execs 0  exits 0  OOM kills 0"
            in _text(Summary(registry.ALL)))
