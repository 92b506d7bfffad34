"""The generic collector over the probes' declarations, on stand-in BPF maps (no kernel): every
family the probes declare comes out with its name, labels and values, drained maps accumulate,
exemplars get their series' labels from the same decoders, and the label decoders one by one."""

from __future__ import annotations

import ctypes
import re
import socket
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.identity.block_devices import BlockDevice
from agent.identity.enricher import Enricher
from agent.metrics.collectors import ProbeMetrics
from agent.metrics.exemplars import Exemplars
from agent.metrics.labels import KeyLabels
from agent.metrics.series_guard import OVERFLOW, SeriesGuard
from probes import families as f
from probes import registry
from probes.latency_hist import HIST_SLOTS, hist_slot
from probes.tcp_lifecycle import DURATION_SLOTS, DurationKey


class Hash(dict):
    """A BPF hash as the collector uses it: batch lookup-and-delete, scalar keys as c_ulong."""

    Key = ctypes.c_ulong

    def items_lookup_and_delete_batch(self) -> list[tuple[Any, Any]]:
        out = list(self.items())
        self.clear()
        return out


class Listeners:
    """A hash read with items() only, keys as BCC gives them (c_ushort)."""

    def __init__(self, port: int, owner: int) -> None:
        self._items = [(ctypes.c_ushort(port), SimpleNamespace(owner=SimpleNamespace(cgroup_id=owner)))]

    def items(self) -> list[tuple[Any, Any]]:
        return self._items


class ConnKey(NamedTuple):
    cgroup_id: int
    direction: int
    outcome: int
    port: int


class SkippedKey(NamedTuple):
    cgroup_id: int
    direction: int


class TupleKey(NamedTuple):
    family: int
    saddr: bytes
    daddr: bytes
    sport: int
    dport: int


class ExitKey(NamedTuple):
    code: int
    kind: int


class BlockKey(NamedTuple):
    cgroup_id: int
    dev: int
    op: int


def hist(slots: dict[int, int], n: int = HIST_SLOTS, sum_ns: int = 0) -> SimpleNamespace:
    return SimpleNamespace(slots=[slots.get(i, 0) for i in range(n)], sum_ns=sum_ns)


def v4(ip: str) -> bytes:
    return socket.inet_aton(ip) + bytes(12)


class Workloads(Enricher):
    """cgroup N -> workload wN, a server's port -> its tier; endpoints by owner or address."""

    label_names = ("workload", "tier")
    peer_label_names = ("peer",)

    def workload_labels(self, cgroup_id: int, port: int | None = None, *, per_pod: bool = False) -> tuple[str, ...]:
        return (f"w{cgroup_id}" + ("/pod" if per_pod else ""), f"t{port}" if port else "")

    def endpoint_labels(self, addr: str, port: int, owner_cgroup: int = 0) -> tuple[str, ...]:
        return (f"w{owner_cgroup}" if owner_cgroup else addr, "")

    def peer_labels(self, addr: str, port: int) -> tuple[str, ...]:
        return (f"{addr}:{port}",)


class Devices:
    def describe(self, major: int, minor: int) -> BlockDevice:
        return BlockDevice(f"dev{major}_{minor}", "/data", "claim", "ns")


def probe(name: str, tables: dict[str, Any], stats: tuple[int, ...] = (0, 0, 0, 0)) -> SimpleNamespace:
    tables = {"stats": {i: [n] for i, n in enumerate(stats)}, **tables}
    return SimpleNamespace(name=name, bpf=tables, plan=SimpleNamespace(spec=registry.get(name)),
                           stat=lambda i: sum(tables["stats"][i]))


def loaded() -> dict[str, SimpleNamespace]:
    return {
        "tcp_lifecycle": probe("tcp_lifecycle", {
            "tcp_connections": Hash({ConnKey(5, 2, 3, 5432): 3, ConnKey(5, 2, 3, 0): 0, ConnKey(6, 1, 0, 0): 2}),
            "tcp_connections_before_agent": Hash({ConnKey(6, 1, 1, 0): 1}),
            "tcp_connection_durations": Hash({ConnKey(5, 1, 0, 0): hist({3: 2}, DURATION_SLOTS, 7000)}),
            "tcp_skipped_closes": Hash({SkippedKey(5, 2): 1}),
            "tcp_opens": {1: [4, 1], 2: [2, 0]},
            "tcp_skip_repairs": {i: [i] for i in range(6)},
            "listeners": Listeners(8080, 9),
        }, stats=(10, 1, 2, 7)),
        "tcp_retransmit": probe("tcp_retransmit", {
            "tcp_retransmits": Hash({TupleKey(socket.AF_INET, v4("10.0.0.1"), v4("10.0.0.2"), 8080, 40000): 5}),
        }),
        "process": probe("process", {
            "process_execs": Hash({7: 11}),
            "process_exits": Hash({ExitKey(0, 1): 2, ExitKey(256, 1): 1, ExitKey(3, 1): 4, ExitKey(9, 2): 1, ExitKey(0, 0): 1}),
        }),
        "oom": probe("oom", {"oom_kills": Hash({7: 1})}),
        "block_io": probe("block_io", {"block_io_latency": Hash({BlockKey(7, (8 << 20) | 1, 1): hist({10: 3}, sum_ns=3_000_000)})}),
        "runqueue": probe("runqueue", {"runqueue_latency": Hash({7: hist({2: 1}, sum_ns=2500)}),
                                       "wakeup_repairs": {0: [3], 1: [0]}}),
    }


def scrape(c: ProbeMetrics) -> str:
    reg = CollectorRegistry()
    reg.register(c)
    return generate_latest(reg).decode()


def test_every_declared_family_comes_out_as_before() -> None:
    probes = loaded()
    exemplars = Exemplars()
    c = ProbeMetrics(registry.ALL, probes, Workloads(), known=registry.names(), received=lambda name: 42,
                     devices=Devices(), exemplars=exemplars)  # type: ignore[arg-type]
    exemplars.for_family("bcgov_tcp_connection_duration_seconds").remember(
        DurationKey(direction=1, outcome=0, cgroup_id=5, port=0), 5000, "a" * 32, "b" * 16)
    text = scrape(c)
    for line in (
        'bcgov_tcp_connections_total{direction="passive",outcome="refused",tier="t5432",workload="w5"} 3.0',
        'bcgov_tcp_connections_total{direction="passive",outcome="refused",tier="",workload="w5"} 0.0',
        'bcgov_tcp_connections_total{direction="active",outcome="normal",tier="",workload="w6"} 2.0',
        'bcgov_tcp_connections_before_agent_total{direction="active",outcome="reset",tier="",workload="w6"} 1.0',
        'bcgov_tcp_connections_opened_total{direction="active"} 5.0',
        'bcgov_tcp_connections_opened_total{direction="passive"} 2.0',
        "bcgov_tcp_untracked_closes_total 7.0",
        'bcgov_tcp_connection_duration_seconds_bucket{direction="active",le="8e-06",outcome="normal",tier="",workload="w5"} 2.0',
        'bcgov_tcp_connection_duration_seconds_sum{direction="active",outcome="normal",tier="",workload="w5"} 7e-06',
        'bcgov_tcp_skipped_closes_total{direction="passive",tier="",workload="w5"} 1.0',
        'bcgov_agent_skip_repairs_total{probe="tcp_lifecycle",repair="reset_sent_marked"} 5.0',
        'bcgov_agent_skip_repairs_total{probe="runqueue",repair="wakeup_marked"} 3.0',
        'bcgov_tcp_retransmits_total{peer="10.0.0.2:40000",tier="",workload="w9"} 5.0',  # 8080's listener owns the local end
        'bcgov_process_execs_total{tier="",workload="w7"} 11.0',
        'bcgov_process_exits_total{status="ok"} 3.0',      # 0 twice and 256 (exit(256): the parent sees 0)
        'bcgov_process_exits_total{status="error"} 4.0',
        'bcgov_process_exits_total{status="signaled"} 1.0',
        'bcgov_process_exits_total{status="unknown"} 1.0',
        'bcgov_oom_kills_total{tier="",workload="w7/pod"} 1.0',
        'bcgov_block_io_latency_seconds_count{device="dev8_1",mount="/data",op="write",pvc="claim",pvc_namespace="ns",tier="",workload="w7"} 3.0',
        'bcgov_runqueue_latency_seconds_count{tier="",workload="w7"} 1.0',
        'bcgov_agent_probe_up{probe="tcp_reset"} 0.0',
        'bcgov_agent_probe_up{probe="tcp_lifecycle"} 1.0',
        'bcgov_agent_events_total{probe="tcp_lifecycle"} 42.0',
        'bcgov_agent_events_lost_total{probe="tcp_lifecycle"} 1.0',
        'bcgov_agent_map_full_total{probe="tcp_lifecycle"} 2.0',
    ):
        assert line in text, line
    assert "bcgov_tcp_resets" not in text  # tcp_reset is not loaded: no family
    assert 'bcgov_agent_events_total{probe="block_io"}' not in text  # no ring buffer
    duration = c.state("bcgov_tcp_connection_duration_seconds")
    ((slot, ex),) = duration.exemplars[("active", "normal", "w5", "")].items()
    assert slot == hist_slot(5000, DURATION_SLOTS) == 3 and ex.labels["trace_id"] == "a" * 32


def test_drained_maps_accumulate_and_feed_the_taps() -> None:
    probes = loaded()
    c = ProbeMetrics(registry.ALL, probes, Workloads(), devices=Devices())  # type: ignore[arg-type]
    seen: list[tuple[str, Any, int]] = []
    c.taps.append(lambda table, key, n: seen.append((table, key, n)))
    scrape(c)
    assert not probes["tcp_lifecycle"].bpf["tcp_connections"]  # lookup-and-delete
    assert ("tcp_connections", ConnKey(6, 1, 0, 0), 2) in seen
    assert any(t == "process_execs" and int(k.value) == 7 for t, k, _ in seen)  # scalar keys as the table's Key
    probes["tcp_lifecycle"].bpf["tcp_connections"][ConnKey(6, 1, 0, 0)] = 5
    text = scrape(c)
    assert 'bcgov_tcp_connections_total{direction="active",outcome="normal",tier="",workload="w6"} 7.0' in text
    assert 'bcgov_agent_probe_up' not in text  # no `known`: no agent families


def test_the_guard_folds_and_forget_drops_released_series() -> None:
    guard = SeriesGuard(default_budget=1)
    probes = loaded()
    c = ProbeMetrics(registry.ALL, probes, Workloads(), guard=guard, devices=Devices())  # type: ignore[arg-type]
    scrape(c)
    totals = c.state("bcgov_tcp_connections").totals
    assert len(totals) == 2 and (OVERFLOW,) * 4 in totals
    released = guard.release_matching(lambda labels: labels.get("workload") == "w5")
    c.forget(released)
    assert all("w5" not in k for k in c.state("bcgov_tcp_connections").totals)


def test_a_second_collector_can_take_only_the_histograms() -> None:
    probes = loaded()
    c = ProbeMetrics(registry.ALL, probes, Workloads(), devices=Devices(), kinds=(f.HistogramFamily,))  # type: ignore[arg-type]
    text = scrape(c)
    assert "bcgov_runqueue_latency_seconds_count" in text and "bcgov_tcp_connections_total" not in text
    assert probes["tcp_lifecycle"].bpf["tcp_connections"]  # left for the agent's own collector


# ---- the label decoders, one by one ------------------------------------------------------------

_KEY = SimpleNamespace(cgroup_id=5, direction=2, outcome=9, port=443, dev=(259 << 20) | 3, code=0x0100, kind=1)


@pytest.mark.parametrize("decl, names, values", [
    (f.EnumLabel("direction", "direction", {1: "active", 2: "passive"}), ("direction",), ("passive",)),
    (f.EnumLabel("outcome", "outcome", {0: "normal"}), ("outcome",), ("unknown",)),  # unknown code: a fixed word
    (f.EnumLabel("op", "outcome", {}, default="other"), ("op",), ("other",)),
    (f.WorkloadLabels(), ("workload", "tier"), ("w5", "")),
    (f.WorkloadLabels(port="port"), ("workload", "tier"), ("w5", "t443")),
    (f.WorkloadLabels(per_pod=True), ("workload", "tier"), ("w5/pod", "")),
    (f.ComputedLabel("status", lambda k: "ok" if k.code & 0xFF == 0 else "error"), ("status",), ("ok",)),
    (f.BlockDevice("dev", ("device",), lambda d: (d >> 20, d & 0xFFFFF)), ("device",), ("dev259_3",)),
    (f.BlockDevice("dev", ("mount", "pvc_namespace"), lambda d: (d >> 20, d & 0xFFFFF)), ("mount", "pvc_namespace"),
     ("/data", "ns")),
    (f.LocalEndpoint(lambda k: ("10.0.0.1", 443)), ("workload", "tier"), ("10.0.0.1", "")),
    (f.LocalEndpoint(lambda k: ("10.0.0.1", 443), owners="o"), ("workload", "tier"), ("w3", "")),
    (f.PeerEndpoint(lambda k: ("10.0.0.2", 5432)), ("peer",), ("10.0.0.2:5432",)),
])
def test_label_decoder(decl: f.Label, names: tuple[str, ...], values: tuple[str, ...]) -> None:
    labels = KeyLabels((decl,), Workloads(), Devices(), lambda name: {443: 3} if name == "o" else {})  # type: ignore[arg-type]
    assert labels.names == names and labels(_KEY) == values


def test_a_scalar_key_is_the_cgroup() -> None:
    labels = KeyLabels((f.WorkloadLabels(cgroup=f.KEY),), Workloads(), Devices(), lambda name: {})  # type: ignore[arg-type]
    assert labels(ctypes.c_ulong(12)) == labels(12) == ("w12", "")


def test_an_unknown_block_device_label_is_refused() -> None:
    with pytest.raises(ValueError, match="serial"):
        KeyLabels((f.BlockDevice("dev", ("serial",), lambda d: (0, 0)),), Workloads(), Devices(), lambda n: {})  # type: ignore[arg-type]


def test_nothing_in_agent_metrics_names_a_probe_or_a_map() -> None:
    """The collectors know probes only through their declarations: a probe's name or one of its
    declared maps in agent/metrics/ would be a special case a new probe could not get."""
    import re
    from pathlib import Path

    probes = {s.name for s in registry.ALL}  # as a string: a name looked up ("process" is also a word)
    tables = {d.table for s in registry.ALL for d in s.metrics if hasattr(d, "table")}
    for path in sorted((Path(__file__).resolve().parents[2] / "agent" / "metrics").glob("*.py")):
        text = path.read_text()
        found = sorted(n for n in probes if re.search(rf"[\"']{n}[\"']", text))
        found += sorted(n for n in tables if re.search(rf"\b{n}\b", text))
        assert not found, f"{path.name} names {found}"


def test_a_family_declared_twice_is_refused_at_start() -> None:
    import dataclasses

    twice = dataclasses.replace(registry.get("oom"), name="oom2")
    with pytest.raises(ValueError, match="bcgov_oom_kills declared twice"):
        ProbeMetrics((*registry.ALL, twice), {}, Workloads())


# ---- one family's failure is that family's, not the page's --------------------------------------

def test_a_family_that_cannot_be_read_is_left_out_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    from agent.metrics.scrape_errors import ScrapeErrors

    probes = loaded()
    del probes["tcp_lifecycle"].bpf["tcp_connections"]       # a map the program lacks (BCC: KeyError)
    del probes["process"].bpf["stats"]                        # no stats array
    c = ProbeMetrics(registry.ALL, probes, Workloads(), known=registry.names(), devices=Devices())  # type: ignore[arg-type]
    now = [0.0]
    c.errors = ScrapeErrors(clock=lambda: now[0])
    with caplog.at_level("ERROR", logger="bcgov.agent.metrics"):
        text = scrape(c)
    # the rest of the page is there, tcp_lifecycle's other families too
    assert 'bcgov_tcp_connections_before_agent_total{direction="active",outcome="reset",tier="",workload="w6"} 1.0' in text
    assert 'bcgov_process_execs_total{tier="",workload="w7"} 11.0' in text
    assert 'bcgov_oom_kills_total{tier="",workload="w7/pod"} 1.0' in text
    assert 'bcgov_agent_map_full_total{probe="tcp_lifecycle"} 2.0' in text
    assert not re.search(r"^bcgov_tcp_connections_total", text, re.M)
    assert 'bcgov_agent_scrape_errors_total{family="bcgov_tcp_connections",probe="tcp_lifecycle"} 1.0' in text
    assert 'bcgov_agent_scrape_errors_total{family="stats",probe="process"} 1.0' in text
    (line,) = [r.getMessage() for r in caplog.records if "bcgov_tcp_connections" in r.getMessage()]
    assert line.startswith("probe tcp_lifecycle, family bcgov_tcp_connections: left out of the scrape: KeyError")
    # the next scrapes within a minute: counted, not logged; a minute on, one line says how many
    caplog.clear()
    with caplog.at_level("ERROR", logger="bcgov.agent.metrics"):
        scrape(c)
        now[0] = 30.0
        text = scrape(c)
        assert not caplog.records
        now[0] = 61.0
        scrape(c)
    assert 'bcgov_agent_scrape_errors_total{family="bcgov_tcp_connections",probe="tcp_lifecycle"} 3.0' in text
    assert [r.getMessage() for r in caplog.records if "bcgov_tcp_connections" in r.getMessage()][0].endswith(
        "(2 more since the last line)")


def test_a_key_whose_labels_cannot_be_decoded_keeps_its_count_in_the_overflow_series() -> None:
    probes = loaded()
    table = probes["tcp_lifecycle"].bpf["tcp_connections"]
    table[SkippedKey(5, 2)] = 4                               # no outcome or port: the decoders cannot read it
    durations = probes["tcp_lifecycle"].bpf["tcp_connection_durations"]
    durations[SkippedKey(5, 1)] = hist({3: 1}, DURATION_SLOTS, 5000)
    c = ProbeMetrics(registry.ALL, probes, Workloads(), known=registry.names(), devices=Devices())  # type: ignore[arg-type]
    text = scrape(c)
    assert not table and not durations                        # drained all the same
    assert 'bcgov_tcp_connections_total{direction="active",outcome="normal",tier="",workload="w6"} 2.0' in text
    assert ('bcgov_tcp_connections_total{direction="__overflow__",outcome="__overflow__",tier="__overflow__",'
            'workload="__overflow__"} 4.0') in text
    assert sum(c.state("bcgov_tcp_connections").totals.values()) == 3 + 0 + 2 + 4   # every count kept
    assert c.state("bcgov_tcp_connection_duration_seconds").slots[(OVERFLOW,) * 4][3] == 1
    assert 'bcgov_agent_undecoded_keys_total{family="bcgov_tcp_connections",probe="tcp_lifecycle"} 1.0' in text
    assert not re.search(r"^bcgov_agent_scrape_errors_total", text, re.M)  # nothing was left out


def test_each_histogram_family_takes_only_its_own_exemplars() -> None:
    """Two families declared with exemplars: what is remembered for one never lands in the other."""
    import dataclasses

    from agent.metrics.exemplars import Exemplars

    labels = (f.WorkloadLabels(cgroup=f.KEY),)
    spec = dataclasses.replace(registry.get("runqueue"), name="two", metrics=(
        f.HistogramFamily("bcgov_a_seconds", "a", "a", labels, exemplars=True),
        f.HistogramFamily("bcgov_b_seconds", "b", "b", labels, exemplars=True),
    ))
    tables = {"stats": {i: [0] for i in range(4)}, "a": Hash({7: hist({3: 1})}), "b": Hash({7: hist({3: 1}), 8: hist({3: 1})})}
    probes = {"two": SimpleNamespace(name="two", bpf=tables, plan=SimpleNamespace(spec=spec), stat=lambda i: 0)}
    exemplars = Exemplars()
    exemplars.for_family("bcgov_b_seconds").remember(8, 5000, "b" * 32, "b" * 16)
    exemplars.for_family("bcgov_a_seconds").remember(7, 5000, "a" * 32, "a" * 16)
    c = ProbeMetrics((spec,), probes, Workloads(), exemplars=exemplars)  # type: ignore[arg-type]
    scrape(c)
    a, b = c.state("bcgov_a_seconds").exemplars, c.state("bcgov_b_seconds").exemplars
    assert {k: ex.labels["trace_id"] for k, slots in a.items() for ex in slots.values()} == {("w7", ""): "a" * 32}
    assert {k: ex.labels["trace_id"] for k, slots in b.items() for ex in slots.values()} == {("w8", ""): "b" * 32}
    assert exemplars.for_family("bcgov_a_seconds") is exemplars.for_family("bcgov_a_seconds")  # bound once, kept
