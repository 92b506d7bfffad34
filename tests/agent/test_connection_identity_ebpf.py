"""The server side's tier and labels that agree between families, on the real kernel with a real
PostgreSQL 15 and pgbench (Debian's): the accepting end takes its tier from its listening port
like the connecting end's peer does; the passive counter, the duration histogram and the reset
counter label the server alike; a refused connect is "refused" in the counter, the histogram and
the span. PostgreSQL and its clients run in cgroups named like systemd services, so their series are
theirs alone."""

from __future__ import annotations

import os
import random
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cgroups
import pytest
from agent_harness import RunningAgent, started_agent, wait_for
from postgres_server import pgbench, postgres
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port

from agent.identity.cgroups import CgroupPathCache
from agent.identity.pod_enricher import IdentityEnricher
from agent.identity.resolver import IdentityResolver, UnresolvedCounts
from agent.identity.tiers import TierResolver
from agent.runtime import AgentParts

pytestmark = [pytest.mark.ebpf, pytest.mark.integration]

CLIENTS, TRANSACTIONS = 2, 7  # pgbench -C: one new connection per transaction, 14 in all


class UnitCgroup:
    """A cgroup2 directory named like a systemd service (its name is the workload label)."""

    def __init__(self, kind: str) -> None:
        self.unit = f"bcgov-test-{kind}-{''.join(random.choices(string.ascii_lowercase, k=8))}.service"
        self.path = cgroups.UNIFIED / self.unit
        self.path.mkdir()
        self.id = self.path.stat().st_ino

    def enter(self) -> None:
        """preexec_fn: the child (and what it starts) runs in this cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        deadline = time.monotonic() + 15
        while self.path.exists():
            try:
                self.path.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # poll: exiting processes leave the cgroup asynchronously


@pytest.fixture
def units() -> Iterator[tuple[UnitCgroup, UnitCgroup]]:
    made: list[UnitCgroup] = []
    try:
        made += [UnitCgroup("pg"), UnitCgroup("client")]
        yield made[0], made[1]
    finally:
        for u in made:
            u.remove()


def _run_in(unit: UnitCgroup, code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], preexec_fn=unit.enter, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout


RESET = r"""
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
"""
REFUSED = r"""
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
except ConnectionRefusedError:
    print("refused")
"""


def _samples(agent: RunningAgent, name: str, **labels: str) -> float:
    total = 0.0
    for fam in text_string_to_metric_families(agent.scrape(openmetrics=False)):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_the_server_end_is_tiered_and_labelled_alike_in_every_family(units, tmp_path: Path) -> None:
    pg, client = units
    port, closed_port = free_port(), free_port()
    resolver = IdentityResolver(CgroupPathCache(), None, TierResolver({"ports": {port: "oltp"}}), UnresolvedCounts(),
                                node="test")
    with started_agent(tmp_path, AgentParts(enricher=IdentityEnricher(resolver))) as agent:
        with postgres(port, pg.enter):  # started after the agent: its listener's cgroup is known
            pgbench(port, ["-i", "-q"], client.enter)
            out = pgbench(port, ["-C", "-c", str(CLIENTS), "-t", str(TRANSACTIONS), "-n"], client.enter)
            assert f"number of transactions actually processed: {CLIENTS * TRANSACTIONS}/" in out
            _run_in(client, RESET, str(port))
            # While PostgreSQL listens: the kernel's listeners map names the port's owner at scrape.
            wait_for(lambda: _samples(agent, "bcgov_tcp_resets_total", direction="received", workload=pg.unit,
                                      tier="oltp") >= 1,
                     what="the server's received reset labelled as PostgreSQL, tier oltp")
        assert _run_in(client, REFUSED, str(closed_port)).strip() == "refused"

        PG = {"namespace": "", "pod": "", "workload": pg.unit, "tier": "oltp"}
        CLIENT = {"namespace": "", "pod": "", "workload": client.unit, "tier": ""}
        passive = lambda: agent.kernel_count("tcp_lifecycle", "tcp_connections",  # noqa: E731
                                             lambda k: k.cgroup_id == pg.id and k.direction == 2)

        def agree() -> bool:
            counted = _samples(agent, "bcgov_tcp_connections_total", direction="passive", **PG)
            timed = _samples(agent, "bcgov_tcp_connection_duration_seconds_count", direction="passive", **PG)
            return counted > CLIENTS * TRANSACTIONS and counted == timed == passive()

        wait_for(agree, what="passive counter == duration histogram == kernel count, tier oltp")
        for name in ("bcgov_tcp_connections_total", "bcgov_tcp_connection_duration_seconds_count"):
            wait_for(lambda name=name: _samples(agent, name, direction="active", outcome="refused", **CLIENT) == 1,
                     what=f"{name}: the refused connect as 'refused' for the client's unit")
        assert _samples(agent, "bcgov_tcp_connections_total", outcome="failed") == 0

        def pg_spans() -> list[dict]:
            return [s for s in agent.spans()
                    if port in (s["attrs"].get("network.local.port"), s["attrs"].get("network.peer.port"))]

        spans = wait_for(lambda: len(got := pg_spans()) >= 2 * CLIENTS * TRANSACTIONS and got, what="pgbench spans")
        servers = [s["attrs"] for s in spans if s["kind"] == 2 and s["attrs"].get("bcgov.workload.name") == pg.unit]
        clients = [s["attrs"] for s in spans if s["kind"] == 3 and s["attrs"].get("bcgov.workload.name") == client.unit]
        assert len(servers) >= CLIENTS * TRANSACTIONS and len(clients) >= CLIENTS * TRANSACTIONS
        assert all(a["bcgov.tier"] == "oltp" and a["network.local.port"] == port for a in servers)
        assert all(a["bcgov.peer.tier"] == "oltp" and "bcgov.tier" not in a for a in clients)
        # The refused connect came after pgbench: its span may be in a batch not yet written.
        refused = wait_for(lambda: [s["attrs"] for s in agent.spans() if s["attrs"].get("network.peer.port") == closed_port],
                           what="the refused connect's span")
        assert [a["bcgov.tcp.outcome"] for a in refused] == ["refused"]
