"""A probe's declared families checked against its compiled maps when it loads (no kernel: BCC's
view of the maps stood in by ctypes types as BCC makes them). One wrong declaration is one line
naming the family, the map or field and the fix, and `loader.load` refuses the probe with
layout_mismatch, so the agent runs the rest (agent/kernel/declared_maps.py)."""

from __future__ import annotations

import ctypes
import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from agent.kernel import declared_maps, loader
from probes import families as f
from probes import registry
from probes.spec import ProbeSpec
from probes.tcp_lifecycle import DIRECTIONS, DURATION_SLOTS, OUTCOMES


class ConnCountKey(ctypes.Structure):  # struct conn_count_key as BCC lays it out
    _fields_ = [("cgroup_id", ctypes.c_ulong), ("direction", ctypes.c_ubyte), ("outcome", ctypes.c_ubyte),
                ("port", ctypes.c_ushort), ("_pad", ctypes.c_ubyte * 4)]


class SkippedCloseKey(ctypes.Structure):
    _fields_ = [("cgroup_id", ctypes.c_ulong), ("direction", ctypes.c_ubyte), ("_pad", ctypes.c_ubyte * 7)]


class Hist32(ctypes.Structure):  # struct bcgov_hist with BCGOV_HIST_SLOTS=32
    _fields_ = [("slots", ctypes.c_ulong * DURATION_SLOTS), ("sum_ns", ctypes.c_ulong)]


class Listener(ctypes.Structure):
    _fields_ = [("owner", ctypes.c_ulong), ("sockets", ctypes.c_uint), ("_pad", ctypes.c_uint)]


def table(key: Any, leaf: Any, max_entries: int = 4096) -> SimpleNamespace:
    return SimpleNamespace(Key=key, Leaf=leaf, max_entries=max_entries)


def tcp_lifecycle_maps() -> dict[str, SimpleNamespace]:
    """tcp_lifecycle's maps as BCC shows them (types read off a loaded probe), plus a scalar-keyed one."""
    per_cpu = ctypes.c_ulong * 2
    return {
        "stats": table(ctypes.c_int, per_cpu, 4),
        "tcp_connections": table(ConnCountKey, ctypes.c_ulong),
        "tcp_connections_before_agent": table(ConnCountKey, ctypes.c_ulong),
        "tcp_opens": table(ctypes.c_int, per_cpu, 3),
        "tcp_connection_durations": table(ConnCountKey, Hist32),
        "tcp_skipped_closes": table(SkippedCloseKey, ctypes.c_ulong),
        "tcp_skip_repairs": table(ctypes.c_int, per_cpu, 6),
        "listeners": table(ctypes.c_ushort, Listener),
        "scalar_counts": table(ctypes.c_ulong, ctypes.c_ulong),
        "layout": table(ctypes.c_int, ctypes.c_ubyte * 8, 1),  # the record struct's type carrier
        "events": SimpleNamespace(),  # the ring buffer
    }


SPEC = registry.get("tcp_lifecycle")


def with_metrics(*metrics: f.Declaration) -> ProbeSpec:
    return dataclasses.replace(SPEC, metrics=metrics)


def test_tcp_lifecycles_declarations_match_its_maps() -> None:
    declared_maps.check(SPEC, tcp_lifecycle_maps())


_CONN = (f.EnumLabel("direction", "direction", DIRECTIONS), f.EnumLabel("outcome", "outcome", OUTCOMES),
         f.WorkloadLabels(port="port"))


@pytest.mark.parametrize("decl, problem", [
    (f.CounterFamily("bcgov_x", "h", "tcp_conections", _CONN),
     "family bcgov_x reads map tcp_conections, which tcp_lifecycle.bpf.c does not declare; name the map"),
    (f.CounterFamily("bcgov_x", "h", "tcp_connections", (f.EnumLabel("outcome", "result", OUTCOMES),)),
     "family bcgov_x: label EnumLabel(outcome) reads key field 'result', which map tcp_connections's key struct "
     "ConnCountKey lacks (it has cgroup_id, direction, outcome, port, _pad); fix the field name"),
    (f.CounterFamily("bcgov_x", "h", "tcp_connections", (f.WorkloadLabels(port="server_port"),)),
     "label WorkloadLabels reads key field 'server_port', which map tcp_connections's key struct"),
    (f.CounterFamily("bcgov_x", "h", "tcp_connections", (f.WorkloadLabels(cgroup=f.KEY),)),
     "label WorkloadLabels reads the whole key (KEY) but map tcp_connections's key is struct ConnCountKey"),
    (f.CounterFamily("bcgov_x", "h", "scalar_counts", (f.WorkloadLabels(),)),
     "label WorkloadLabels reads key field 'cgroup_id' but map scalar_counts's key is a scalar (c_ulong); read it as KEY"),
    (f.CounterFamily("bcgov_x", "h", "tcp_connections", (f.ComputedLabel("status", lambda k: str(k.code)),)),
     "label ComputedLabel(status): its function <lambda> fails on map tcp_connections's key struct ConnCountKey"),
    (f.CounterFamily("bcgov_x", "h", "tcp_connections", (f.PeerEndpoint(lambda k: ("", k.dport)),)),
     "label PeerEndpoint: its function <lambda> fails on map tcp_connections's key struct ConnCountKey"),
    (f.CounterFamily("bcgov_x", "h", "tcp_connections", (f.LocalEndpoint(lambda k: ("", 0), fields=("sport",)),)),
     "label LocalEndpoint reads key field 'sport'"),
    (f.HistogramFamily("bcgov_x", "h", "tcp_connections", _CONN),
     "family bcgov_x is a HistogramFamily but map tcp_connections's value is c_ulong, not struct bcgov_hist"),
    (f.CounterFamily("bcgov_x", "h", "tcp_connection_durations", _CONN),
     "family bcgov_x is a CounterFamily (a map of u64 counts) but map tcp_connection_durations's value is Hist32"),
    (f.HistogramFamily("bcgov_x", "h", "tcp_connection_durations", _CONN),  # slots: HIST_SLOTS (26) by default
     "family bcgov_x declares 26 slots but map tcp_connection_durations's struct bcgov_hist has 32"),
    (f.IndexedCounter("bcgov_x", "h", "tcp_opens", "direction", {1: "active", 3: "simultaneous"}),
     "family bcgov_x reads index 3 of array tcp_opens, which has 3 entries"),
    (f.StatCounter("bcgov_x", "h", 4), "family bcgov_x reads index 4 of array stats, which has 4 entries"),
    (f.PortOwners("owners", "listener", lambda v: 0), "port owners owners reads map listener, which"),
])
def test_a_wrong_declaration_is_one_line_naming_the_family_and_the_fix(decl: f.Declaration, problem: str) -> None:
    with pytest.raises(declared_maps.DeclarationMismatch) as err:
        declared_maps.check(with_metrics(decl), tcp_lifecycle_maps())
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_decoders_that_read_the_key_through_a_function_pass_when_the_fields_exist() -> None:
    ok = f.CounterFamily("bcgov_x", "h", "tcp_connections", (
        f.ComputedLabel("port", lambda k: str(k.port)), f.PeerEndpoint(lambda k: ("", k.port), fields=("port",)),
        f.LocalEndpoint(lambda k: 1 / 0),  # fails on a zeroed key for another reason: no mismatch
    ))
    declared_maps.check(with_metrics(ok), tcp_lifecycle_maps())


def test_a_probe_without_the_stats_array_is_refused() -> None:
    maps = tcp_lifecycle_maps()
    del maps["stats"]
    with pytest.raises(declared_maps.DeclarationMismatch, match=r"no `stats` array in tcp_lifecycle.bpf.c; every probe declares"):
        declared_maps.check(SPEC, maps)


class _Compiled:
    """Stands in for bcc.BPF: compiles anything, and has tcp_lifecycle's maps."""

    closed = 0

    def __init__(self, src_file: bytes, cflags: list[str]) -> None:
        self.maps = tcp_lifecycle_maps()

    def __getitem__(self, name: str) -> SimpleNamespace:
        return self.maps[name]

    def cleanup(self) -> None:
        _Compiled.closed += 1


def test_load_refuses_a_probe_whose_declaration_the_program_does_not_match() -> None:
    spec = with_metrics(f.CounterFamily("bcgov_x", "h", "tcp_connections", (f.EnumLabel("outcome", "result", OUTCOMES),)))
    spec = dataclasses.replace(spec, raw_tracepoints=(), layouts={})
    plan = loader.ProbePlan(spec, missing=(), defines=(), missing_optional=())
    _Compiled.closed = 0
    with pytest.raises(loader.ProbeLoadError) as err:
        loader.load(plan, _Compiled)
    assert err.value.code == "layout_mismatch" and _Compiled.closed == 1
    assert str(err.value).startswith("probe tcp_lifecycle: family bcgov_x: label EnumLabel(outcome) reads key field 'result'")
    # the same probe with its own declaration loads
    assert loader.load(dataclasses.replace(plan, spec=dataclasses.replace(SPEC, raw_tracepoints=(), layouts={})), _Compiled)


@pytest.mark.parametrize("change, problem", [
    ({"layouts": {"layuot": object}}, "spec layout layuot names a map tcp_lifecycle.bpf.c does not declare; the C declares "
                                      "one map per record struct only for its type"),
    ({"ring_buffer": "evnets"}, "spec ring_buffer evnets names a map tcp_lifecycle.bpf.c does not declare; declare "
                                "BPF_RINGBUF_OUTPUT(evnets, <pages>) in the C or fix the name"),
])
def test_a_layout_or_ring_buffer_the_c_lacks_is_one_line_not_a_keyerror(change: dict[str, Any], problem: str) -> None:
    # These reached BCC as a bare KeyError from the loader's layout check or the reader, and stopped
    # the whole agent.
    with pytest.raises(declared_maps.DeclarationMismatch) as exc:
        declared_maps.check(dataclasses.replace(SPEC, **change), tcp_lifecycle_maps())
    assert problem in str(exc.value) and "\n" not in str(exc.value)
