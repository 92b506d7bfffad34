"""Events: plain records of kernel facts, decoded from probe records and nothing more.

Timestamps are kernel monotonic nanoseconds (`bpf_ktime_get_ns`); turning them into wall-clock
time, adding identity and exporting happen later in the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~2 us per record on the hot path
class TcpConnection:
    """A finished TCP connection as one endpoint's socket saw it (treat as read-only)."""

    direction: str            # "active" (connect) or "passive" (accept)
    outcome: str              # "normal", "reset", "refused", "timeout"
    start_ns: int
    established_ns: int       # 0 when the handshake never completed
    end_ns: int
    family: int
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    pid: int                  # owning process (tgid); 0 when no owner could be attributed
    tid: int
    comm: str
    cgroup_id: int
    owner_source: str         # "connect", "listener", "io" or "unknown"
    bytes_sent: int | None    # None when the kernel lacks sock_send_length/sock_recv_length
    bytes_received: int | None
    retransmits: int
    retransmit_ns: tuple[int, ...]   # first few retransmit times
    reset_ns: int             # 0 when no reset was seen
    reset_received: bool
    reset_sent: bool
    sock: int
    # Opened before the agent started (learnt from sock_diag): start_ns is when the agent learnt
    # of it, not when it opened, and its duration is unknown.
    before_agent: bool = False

    @property
    def duration_ns(self) -> int:
        """Nanoseconds from the first state change seen to close."""
        return max(0, self.end_ns - self.start_ns)

    @property
    def failed(self) -> bool:
        """True when the connection never got established (refused or timed out)."""
        return self.outcome in ("refused", "timeout")


@dataclass(frozen=True, slots=True)
class ProcessExec:
    """A successful execve: the new program, its (still raw) argv and where it runs."""

    ts_ns: int
    pid: int
    uid: int
    comm: str
    filename: str
    argv: tuple[str, ...]
    argv_truncated: bool
    cgroup_id: int


@dataclass(frozen=True, slots=True)
class ProcessExit:
    """A process (whole thread group) ended."""

    ts_ns: int
    pid: int
    comm: str
    cgroup_id: int
    start_ns: int             # 0 when it started before the agent
    exit_kind: str            # "exited", "signaled" or "unknown"
    exit_code: int | None     # exit status for "exited"
    signal: int | None        # signal number for "signaled"

    @property
    def lifetime_ns(self) -> int | None:
        """How long the process lived, when its start was seen."""
        return self.ts_ns - self.start_ns if self.start_ns else None


@dataclass(frozen=True, slots=True)
class OomKill:
    """The OOM killer chose a victim."""

    ts_ns: int
    pid: int
    comm: str
    cgroup_id: int            # 0 when the victim's cgroup could not be known
    trigger_pid: int          # the task whose allocation ran out of memory
    uid: int
    total_vm_kb: int
    anon_rss_kb: int
    file_rss_kb: int
    shmem_rss_kb: int
