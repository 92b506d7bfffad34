"""Running one BPF program by hand with BPF_PROG_TEST_RUN (bpf(2)), for tests that need an event's
raw tracepoint program to run without the tracepoint program before it: exactly what the kernel
does for an event whose tracepoint run it skipped."""

from __future__ import annotations

import ctypes
import os
import platform

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_TEST_RUN = 10


def run_raw(prog_fd: int, *args: int) -> None:
    """Run the raw tracepoint program `prog_fd` once with `args` (u64 each) as its context.
    Raises OSError with the kernel's errno when bpf(2) refuses."""
    ctx = (ctypes.c_uint64 * len(args))(*args)
    attr = (ctypes.c_uint8 * 80)()  # union bpf_attr, test member: prog_fd @0, ctx_size_in @40, ctx_in @48
    ctypes.c_uint32.from_buffer(attr, 0).value = prog_fd
    ctypes.c_uint32.from_buffer(attr, 40).value = ctypes.sizeof(ctx)
    ctypes.c_uint64.from_buffer(attr, 48).value = ctypes.addressof(ctx)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_BPF_SYSCALL[platform.machine()], _BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
