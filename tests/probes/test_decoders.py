"""Probe decoders and address helpers, table-driven, without the kernel."""

from __future__ import annotations

import ctypes
import socket

import pytest

from probes import oom, process, tcp_lifecycle, tcp_reset
from probes.records import LayoutMismatch, c_string, check_layout, ip_from_bytes, sockaddr_endpoint


@pytest.mark.parametrize(
    "flags, outcome",
    [
        (tcp_lifecycle.F_ESTABLISHED, "normal"),
        (tcp_lifecycle.F_ESTABLISHED | tcp_lifecycle.F_RESET_RECEIVED, "reset"),
        (tcp_lifecycle.F_ESTABLISHED | tcp_lifecycle.F_RESET_SENT, "reset"),
        (tcp_lifecycle.F_RESET_RECEIVED, "refused"),
        (0, "timeout"),
        (tcp_lifecycle.F_BYTES_KNOWN, "timeout"),
    ],
)
def test_close_outcome(flags: int, outcome: str) -> None:
    assert tcp_lifecycle.outcome_of(flags) == outcome


def _close_record(**kw: object) -> bytes:
    r = tcp_lifecycle.TcpCloseRecord()
    for k, v in kw.items():
        setattr(r, k, v)
    return bytes(r)


def test_tcp_close_record_decodes_every_field() -> None:
    saddr = (ctypes.c_uint8 * 16)(*([10, 0, 0, 7] + [0] * 12))
    daddr = (ctypes.c_uint8 * 16)(*([10, 0, 0, 9] + [0] * 12))
    rtx = (ctypes.c_uint64 * 4)(100, 200, 0, 0)
    raw = _close_record(
        start_ns=1_000, established_ns=1_500, end_ns=9_000, reset_ns=0, bytes_sent=11, bytes_received=13,
        rtx_ns=rtx, cgroup_id=4242, sock=0xFFFF1, tgid=77, tid=78, retransmits=2, family=socket.AF_INET,
        sport=40000, dport=5432, direction=1, flags=tcp_lifecycle.F_ESTABLISHED | tcp_lifecycle.F_BYTES_KNOWN,
        owner_source=1, oldstate=4, saddr=saddr, daddr=daddr, comm=b"psql",
    )
    ev = tcp_lifecycle.decode(raw)
    assert (ev.direction, ev.outcome, ev.owner_source) == ("active", "normal", "connect")
    assert (ev.local_addr, ev.local_port, ev.remote_addr, ev.remote_port) == ("10.0.0.7", 40000, "10.0.0.9", 5432)
    assert (ev.pid, ev.tid, ev.comm, ev.cgroup_id) == (77, 78, "psql", 4242)
    assert (ev.bytes_sent, ev.bytes_received) == (11, 13)
    assert ev.retransmit_ns == (100, 200) and ev.retransmits == 2
    assert ev.duration_ns == 8_000 and not ev.failed


def test_bytes_are_absent_when_the_kernel_lacks_length_tracepoints() -> None:
    ev = tcp_lifecycle.decode(_close_record(flags=tcp_lifecycle.F_ESTABLISHED, family=socket.AF_INET, direction=2))
    assert ev.bytes_sent is None and ev.bytes_received is None
    assert ev.direction == "passive" and ev.owner_source == "unknown"


def test_retransmit_times_are_capped_at_the_slots_but_the_count_is_not() -> None:
    rtx = (ctypes.c_uint64 * 4)(1, 2, 3, 4)
    ev = tcp_lifecycle.decode(_close_record(retransmits=9, rtx_ns=rtx, family=socket.AF_INET, flags=1))
    assert ev.retransmits == 9 and ev.retransmit_ns == (1, 2, 3, 4)


@pytest.mark.parametrize(
    "family, raw, text",
    [
        (socket.AF_INET, bytes([127, 0, 0, 1]) + bytes(12), "127.0.0.1"),
        (socket.AF_INET6, bytes(15) + b"\x01", "::1"),
        (socket.AF_INET6, bytes(10) + b"\xff\xff" + bytes([192, 168, 1, 2]), "192.168.1.2"),  # v4-mapped
        (99, bytes(16), ""),
    ],
)
def test_ip_from_bytes(family: int, raw: bytes, text: str) -> None:
    assert ip_from_bytes(family, raw) == text


def test_sockaddr_endpoints_in_both_families() -> None:
    v4 = socket.AF_INET.to_bytes(2, "little") + (5432).to_bytes(2, "big") + bytes([10, 1, 2, 3]) + bytes(20)
    assert sockaddr_endpoint(v4) == (socket.AF_INET, "10.1.2.3", 5432)
    v6 = socket.AF_INET6.to_bytes(2, "little") + (9092).to_bytes(2, "big") + bytes(4) + bytes(15) + b"\x01" + bytes(4)
    assert sockaddr_endpoint(v6) == (socket.AF_INET6, "::1", 9092)


class _ResetKey:
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


def test_reset_keys_decode_in_both_kernel_layouts() -> None:
    v4 = lambda addr, port: socket.AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big") + bytes(addr) + bytes(20)  # noqa: E731
    new = _ResetKey(direction=1, addr_kind=tcp_reset.ADDR_SOCKADDR, family=0, sport=0, dport=0,
                    saddr=v4([127, 0, 0, 1], 80), daddr=v4([127, 0, 0, 2], 5555))
    assert tcp_reset.decode_key(new) == tcp_reset.ResetTuple("sent", socket.AF_INET, "127.0.0.1", 80, "127.0.0.2", 5555)
    old = _ResetKey(direction=2, addr_kind=tcp_reset.ADDR_TUPLE, family=socket.AF_INET, sport=80, dport=5555,
                    saddr=bytes([127, 0, 0, 1]) + bytes(24), daddr=bytes([127, 0, 0, 2]) + bytes(24))
    assert tcp_reset.decode_key(old) == tcp_reset.ResetTuple("received", socket.AF_INET, "127.0.0.1", 80, "127.0.0.2", 5555)


def test_exec_record_keeps_every_argument_and_flags_truncation() -> None:
    r = process.ExecRecord(kind=process.KIND_EXEC, tgid=5, ts_ns=10, cgroup_id=3, uid=1000, argc=3, truncated=1)
    r.comm = b"psql"
    r.filename = b"/usr/bin/psql"
    flat = bytearray(process.ARG_LEN * process.ARGS_MAX)
    for i, a in enumerate([b"psql", b"-h", b"db"]):
        flat[i * process.ARG_LEN : i * process.ARG_LEN + len(a)] = a
    r.argv = (ctypes.c_uint8 * len(flat))(*flat)
    ev = process.decode(bytes(r))
    assert ev.argv == ("psql", "-h", "db") and ev.argv_truncated
    assert (ev.pid, ev.uid, ev.comm, ev.filename, ev.cgroup_id) == (5, 1000, "psql", "/usr/bin/psql", 3)


@pytest.mark.parametrize(
    "kind, code, expected",
    [(1, 0, ("exited", 0, None)), (1, 23, ("exited", 23, None)), (1, 256 + 3, ("exited", 3, None)),
     (2, 9, ("signaled", None, 9)), (0, 0, ("unknown", None, None))],
)
def test_exit_status(kind: int, code: int, expected: tuple) -> None:
    assert process.exit_status(kind, code) == expected


def test_exit_record_lifetime() -> None:
    x = process.ExitRecord(kind=process.KIND_EXIT, tgid=9, ts_ns=5_000, cgroup_id=1, start_ns=1_000, code=9, exit_kind=2)
    x.comm = b"java"
    ev = process.decode(bytes(x))
    assert ev.lifetime_ns == 4_000 and ev.exit_kind == "signaled" and ev.signal == 9
    assert process.decode(bytes(process.ExitRecord(kind=process.KIND_EXIT, start_ns=0, ts_ns=7))).lifetime_ns is None


def test_unknown_process_record_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown kind 7"):
        process.decode((7).to_bytes(4, "little") + bytes(100))


def test_oom_record() -> None:
    r = oom.OomRecord(ts_ns=1, cgroup_id=2, total_vm_kb=3, anon_rss_kb=4, file_rss_kb=5, shmem_rss_kb=6, pid=7, trigger_tgid=8, uid=0)
    r.comm = b"postgres"
    ev = oom.decode(bytes(r))
    assert (ev.pid, ev.trigger_pid, ev.comm, ev.cgroup_id, ev.anon_rss_kb) == (7, 8, "postgres", 2, 4)


def test_c_string_stops_at_nul_and_never_raises() -> None:
    assert c_string(b"abc\0def") == "abc"
    assert c_string(b"\xffok\0") == "\ufffdok"


def test_layout_check_names_the_field_that_moved() -> None:
    class A(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint32)]

    class B(ctypes.Structure):
        _fields_ = [("b", ctypes.c_uint32), ("a", ctypes.c_uint32)]

    class C(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint64)] * 1 + [("b", ctypes.c_uint64)]

    check_layout(A, A)
    with pytest.raises(LayoutMismatch, match=r"A.a is at offset 0 but the BPF program has it at 4"):
        check_layout(A, B)
    with pytest.raises(LayoutMismatch, match="8 bytes but the BPF program's struct is 16"):
        check_layout(A, C)


def test_tcp_close_decode_matches_the_ctypes_mirror_field_by_field() -> None:
    """decode unpacks with a struct built from the mirror and builds the event positionally; read
    the same bytes through ctypes and compare every field, so a reordering on either side shows."""
    import dataclasses
    import random

    rng = random.Random(3)
    for flags in (0, tcp_lifecycle.F_ESTABLISHED | tcp_lifecycle.F_BYTES_KNOWN | tcp_lifecycle.F_RESET_SENT,
                  tcp_lifecycle.F_ESTABLISHED | tcp_lifecycle.F_RESET_RECEIVED,
                  tcp_lifecycle.F_ESTABLISHED | tcp_lifecycle.F_BEFORE_AGENT):
        r = tcp_lifecycle.TcpCloseRecord()
        for name, ctype, *_ in r._fields_:
            if issubclass(ctype, ctypes.Array):
                continue
            setattr(r, name, rng.getrandbits(8 * ctypes.sizeof(ctype)))
        r.family, r.flags, r.retransmits, r.direction, r.owner_source = socket.AF_INET6, flags, 3, 2, 3
        r.rtx_ns = (ctypes.c_uint64 * 4)(11, 22, 33, 44)
        r.saddr = (ctypes.c_uint8 * 16)(*range(1, 17))
        r.daddr = (ctypes.c_uint8 * 16)(*([0] * 10 + [0xFF, 0xFF, 10, 1, 2, 3]))
        r.comm = b"kafka-broker"
        ev = tcp_lifecycle.decode(bytes(r))
        want = {
            "direction": "passive", "outcome": tcp_lifecycle.outcome_of(flags), "start_ns": r.start_ns,
            "established_ns": r.established_ns, "end_ns": r.end_ns, "family": socket.AF_INET6,
            "local_addr": "102:304:506:708:90a:b0c:d0e:f10", "local_port": r.sport, "remote_addr": "10.1.2.3",
            "remote_port": r.dport, "pid": r.tgid, "tid": r.tid, "comm": "kafka-broker", "cgroup_id": r.cgroup_id,
            "owner_source": "io",
            "bytes_sent": r.bytes_sent if flags & tcp_lifecycle.F_BYTES_KNOWN else None,
            "bytes_received": r.bytes_received if flags & tcp_lifecycle.F_BYTES_KNOWN else None,
            "retransmits": 3, "retransmit_ns": (11, 22, 33), "reset_ns": r.reset_ns,
            "reset_received": bool(flags & tcp_lifecycle.F_RESET_RECEIVED),
            "reset_sent": bool(flags & tcp_lifecycle.F_RESET_SENT), "sock": r.sock,
            "before_agent": bool(flags & tcp_lifecycle.F_BEFORE_AGENT),
        }
        assert set(want) == {f.name for f in dataclasses.fields(ev)}
        assert {k: getattr(ev, k) for k in want} == want
