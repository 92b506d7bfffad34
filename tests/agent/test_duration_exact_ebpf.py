"""The connection-duration histogram is kept in the kernel, so it counts every connection even
when the ring buffer is too small for the records: the exactness proof. A one-page ring buffer
(about 19 records) and a burst of connections make the kernel drop records for sure; the
histogram's count for the test's cgroup must still equal the connections made, and its exemplars
must name spans the agent really wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import CgroupIdentity, RunningAgent, started_agent, wait_for
from prometheus_client.openmetrics.parser import text_string_to_metric_families

pytestmark = pytest.mark.ebpf

BURST = 401  # prime: a count that cannot happen by accident; ~800 records against a ~19-record buffer
DURATION = "bcgov_tcp_connection_duration_seconds"


@pytest.fixture
def tiny_ring_agent(tmp_path: Path) -> Iterator[RunningAgent]:
    from agent.runtime import AgentParts

    with started_agent(tmp_path, AgentParts(enricher=CgroupIdentity()), probes=["tcp_lifecycle"], ring_buffer_pages=1) as agent:
        yield agent


def _families(text: str) -> dict[str, Any]:
    # The OpenMetrics parser rejects an invalid exposition (exemplars included): validity is checked here too.
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_duration_histogram_counts_every_connection_even_when_records_are_lost(tiny_ring_agent: RunningAgent, cgroup) -> None:
    result = cgroup.run("tcp", str(BURST))
    assert result.returncode == 0, result.stderr
    port = json.loads(result.stdout)["port"]
    mine = str(cgroup.id)
    state: dict[str, Any] = {}

    def counted() -> bool:
        fams = _families(tiny_ring_agent.scrape(openmetrics=True))
        state["fams"] = fams
        counts = {s.labels["direction"]: s.value for s in fams[DURATION].samples
                  if s.name == DURATION + "_count" and s.labels["cgroup"] == mine and s.labels["outcome"] == "normal"}
        state["counts"] = counts
        return counts.get("active", 0) >= BURST and counts.get("passive", 0) >= BURST

    wait_for(counted, what=f"{BURST} connections of each direction in the duration histogram")
    # Scrapes after the burst only add what was left in the kernel map: nothing more.
    assert counted() and state["counts"] == {"active": BURST, "passive": BURST}
    fams = state["fams"]

    lost = next(s.value for s in fams["bcgov_agent_events_lost"].samples
                if s.name == "bcgov_agent_events_lost_total" and s.labels["probe"] == "tcp_lifecycle")
    assert lost > 0, "the one-page ring buffer lost nothing: this test proves nothing then"
    spans = [s for s in tiny_ring_agent.spans() if s["attrs"].get("server.port") == port]
    assert len(spans) < 2 * BURST  # records were lost, yet the histogram has every connection

    # The kernel's own counter agrees with the histogram.
    counters = {s.labels["direction"]: s.value for s in fams["bcgov_tcp_connections"].samples
                if s.name == "bcgov_tcp_connections_total" and s.labels["cgroup"] == mine and s.labels["outcome"] == "normal"}
    assert counters == {"active": BURST, "passive": BURST}

    # Buckets are cumulative and end at the count; the sum is a measured, positive duration.
    for direction in ("active", "passive"):
        samples = [s for s in fams[DURATION].samples if s.labels.get("cgroup") == mine
                   and s.labels["direction"] == direction and s.labels["outcome"] == "normal"]
        buckets = [s for s in samples if s.name == DURATION + "_bucket"]
        assert [s.value for s in buckets] == sorted(s.value for s in buckets)
        assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == BURST
        assert next(s.value for s in samples if s.name == DURATION + "_sum") > 0

    # Exemplars name spans the agent wrote (batched to the file within a second), and sit in the
    # bucket their duration falls in.
    exemplars = [s for s in fams[DURATION].samples if s.exemplar is not None and s.labels.get("cgroup") == mine]
    assert exemplars, "no exemplar on the test cgroup's buckets although spans were kept"
    wanted = {(s.exemplar.labels["trace_id"], s.exemplar.labels["span_id"]) for s in exemplars}

    def written() -> dict[tuple[str, str], Any] | None:
        spans = {(s["traceId"], s["spanId"]): s for s in tiny_ring_agent.spans()}
        return spans if wanted <= spans.keys() else None

    by_id = wait_for(written, what="the exemplars' spans in the spans file")
    bounds = {}
    for s in fams[DURATION].samples:
        if s.name == DURATION + "_bucket":
            bounds.setdefault(tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")), []).append(float(s.labels["le"]))
    for s in exemplars:
        ex = s.exemplar
        span = by_id[(ex.labels["trace_id"], ex.labels["span_id"])]
        assert span["attrs"]["bcgov.cgroup.id"] == cgroup.id
        assert span["attrs"]["bcgov.tcp.direction"] == s.labels["direction"]
        le = float(s.labels["le"])
        series = sorted(bounds[tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))])
        below = max((b for b in series if b < le), default=0.0)
        assert below <= ex.value < le or (le == float("inf") and ex.value >= below)
        duration_s = (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e9
        assert ex.value == pytest.approx(duration_s, abs=1e-4)  # wall times: the clock offset may be resampled between the two ends
