"""process: exec and exit with argv, exit code and lifetime (see process.bpf.c)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.redaction.redact import redact_argv, redact_text
from probes import families as f
from probes.events import ProcessExec, ProcessExit
from probes.records import c_string
from probes.spec import FieldFeature, ProbeSpec, Tally

if TYPE_CHECKING:
    from agent.pipeline.router import HandlerContext

ARGS_MAX = 16
ARG_LEN = 64
FILENAME_LEN = 128
KIND_EXEC, KIND_EXIT = 1, 2
EXIT_KINDS = {0: "unknown", 1: "exited", 2: "signaled"}


class ExecRecord(ctypes.Structure):
    """Mirror of `struct exec_record`."""

    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("tgid", ctypes.c_uint32),
        ("ts_ns", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("uid", ctypes.c_uint32),
        ("argc", ctypes.c_uint32),
        ("truncated", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("comm", ctypes.c_char * 16),
        ("filename", ctypes.c_char * FILENAME_LEN),
        ("argv", ctypes.c_uint8 * (ARG_LEN * ARGS_MAX)),  # bytes: a c_char array stops at the first NUL
    ]


class ExitRecord(ctypes.Structure):
    """Mirror of `struct exit_record`."""

    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("tgid", ctypes.c_uint32),
        ("ts_ns", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("start_ns", ctypes.c_uint64),
        ("code", ctypes.c_int32),
        ("exit_kind", ctypes.c_uint32),
        ("comm", ctypes.c_char * 16),
    ]


def exit_status(exit_kind: int, code: int) -> tuple[str, int | None, int | None]:
    """(kind, exit code, signal) from the kernel's exit_group code or fatal signal.

    exit_group() takes an int but the status a parent sees is its low byte, so report that.
    """
    kind = EXIT_KINDS.get(exit_kind, "unknown")
    if kind == "exited":
        return kind, code & 0xFF, None
    if kind == "signaled":
        return kind, None, code
    return kind, None, None


def exit_status_label(key: Any) -> str:
    """`status` of a `process_exits` key (struct exit_info): ok or error by the exit code's low
    byte, else signaled or unknown."""
    kind, code, _ = exit_status(key.kind, key.code)
    if kind == "exited":
        return "ok" if code == 0 else "error"
    return kind


def decode(raw: bytes) -> ProcessExec | ProcessExit:
    """Decode an exec or exit record, told apart by their leading `kind`."""
    kind = int.from_bytes(raw[:4], "little")
    if kind == KIND_EXEC:
        r = ExecRecord.from_buffer_copy(raw)
        flat = bytes(r.argv)
        argv = tuple(
            c_string(flat[i * ARG_LEN : (i + 1) * ARG_LEN]) for i in range(min(r.argc, ARGS_MAX))
        )
        return ProcessExec(
            ts_ns=r.ts_ns,
            pid=r.tgid,
            uid=r.uid,
            comm=c_string(r.comm),
            filename=c_string(r.filename),
            argv=argv,
            argv_truncated=bool(r.truncated),
            cgroup_id=r.cgroup_id,
        )
    if kind == KIND_EXIT:
        x = ExitRecord.from_buffer_copy(raw)
        exit_kind, code, sig = exit_status(x.exit_kind, x.code)
        return ProcessExit(
            ts_ns=x.ts_ns,
            pid=x.tgid,
            comm=c_string(x.comm),
            cgroup_id=x.cgroup_id,
            start_ns=x.start_ns,
            exit_kind=exit_kind,
            exit_code=code,
            signal=sig,
        )
    raise ValueError(f"process probe record of unknown kind {kind}")


def handler(ctx: HandlerContext) -> Callable[[ProcessExec | ProcessExit], None]:
    """An exec -> a "process exec" log line (argv and path redacted: agent/redaction/redact.py); an
    exit -> a "process exit" line, WARN when it failed or was signaled."""
    wall, attributes_for, write = ctx.clock.to_wall_ns, ctx.enricher.attributes_for, ctx.event_log.write

    def on_exec(ev: ProcessExec) -> None:
        attrs: dict[str, Any] = {
            "process.pid": ev.pid,
            "process.executable.name": ev.comm,
            "process.executable.path": redact_text(ev.filename),
            "process.command_args": redact_argv(ev.argv, ARG_LEN),
            "process.owner.uid": ev.uid,
        }
        if ev.argv_truncated:
            attrs["bcgov.process.args_truncated"] = True
        attrs.update(attributes_for(ev.cgroup_id, ev.pid))
        write(wall(ev.ts_ns), "process exec", attrs)

    def on_exit(ev: ProcessExit) -> None:
        attrs: dict[str, Any] = {"process.pid": ev.pid, "process.executable.name": ev.comm,
                                 "bcgov.process.exit_kind": ev.exit_kind}
        if ev.exit_code is not None:
            attrs["process.exit.code"] = ev.exit_code
        if ev.signal is not None:
            attrs["bcgov.process.signal"] = ev.signal
        if ev.lifetime_ns is not None:
            attrs["bcgov.process.lifetime_seconds"] = ev.lifetime_ns / 1e9
        attrs.update(attributes_for(ev.cgroup_id, ev.pid))
        failed = ev.exit_kind == "signaled" or (ev.exit_code or 0) != 0
        write(wall(ev.ts_ns), "process exit", attrs, severity="WARN" if failed else "INFO")

    def handle(ev: ProcessExec | ProcessExit) -> None:
        if type(ev) is ProcessExec:  # the decoder makes one of the two, by the record's kind
            on_exec(ev)
        else:
            on_exit(ev)  # type: ignore[arg-type]
    return handle


TALLY = Tally(("execs", "exits"), lambda ev: (1, 0) if type(ev) is ProcessExec else (0, 1))


SPEC = ProbeSpec(
    name="process",
    summary="process exec (argv redacted) and exit with exit code and lifetime",
    required=(
        "sched:sched_process_exec",
        "sched:sched_process_exit",
        "sched:sched_process_fork",
        "syscalls:sys_enter_execve",
        "syscalls:sys_exit_execve",
        "syscalls:sys_enter_exit_group",
        "signal:signal_deliver",
    ),
    field_features=(FieldFeature("sched:sched_process_exit", "group_dead", "HAVE_GROUP_DEAD"),),
    layouts={"layout_exec": ExecRecord, "layout_exit": ExitRecord},
    ring_buffer="events",
    decoder=decode,
    defines=(f"ARGS_MAX={ARGS_MAX}",),
    metrics=(
        f.CounterFamily("bcgov_process_execs", "Successful execs, counted in the kernel.", "process_execs",
                        (f.WorkloadLabels(cgroup=f.KEY),)),
        f.CounterFamily(
            "bcgov_process_exits", "Process exits by status (ok, error, signaled, unknown), counted in the kernel.",
            "process_exits", (f.ComputedLabel("status", exit_status_label, fields=("kind", "code")),),
        ),
    ),
    handler=handler,
    tally=TALLY,
)
