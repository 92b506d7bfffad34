"""Checks before loading anything: root, BCC, kernel headers, tracefs, BPF.

Each failure is one line that says what is missing and how to fix it; the CLI exits 2.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.kernel import headers as kernel_headers
from agent.kernel import tracefs


class PreflightError(Exception):
    """The node cannot run the agent as is; the message names the fix."""


def check(
    modules_root: str = "/lib/modules",
    tracefs_roots: tuple[str, ...] = tracefs.CANDIDATE_ROOTS,
    headers: kernel_headers.Locations | None = None,
) -> Path:
    """Run every check in order of likelihood; returns the tracefs root. Headers: the node's own,
    else the kernel's archive, else the bundled set (agent/kernel/headers.py); `headers` overrides
    where to look (`modules_root` is kept for callers that only move that)."""
    if os.geteuid() != 0:
        raise PreflightError(
            "bcgov agent needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN for BCC): run it with sudo, "
            "or as the DaemonSet in deploy/daemonset"
        )
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        raise PreflightError(
            "BCC's Python bindings are missing: apt-get install python3-bpfcc, and run from a venv made with "
            "'--system-site-packages' (scripts/bootstrap.sh does both); never 'pip install bcc', an unrelated package"
        ) from exc
    try:
        kernel_headers.choose(headers or kernel_headers.Locations(modules_root=modules_root))
    except kernel_headers.HeadersMissing as exc:
        raise PreflightError(str(exc)) from exc
    try:
        root = tracefs.find_root(tracefs_roots)
    except tracefs.TracefsMissing as exc:
        raise PreflightError(str(exc)) from exc
    if not os.path.exists("/sys/fs/bpf") and not os.path.exists("/proc/sys/kernel/bpf_stats_enabled"):
        raise PreflightError("this kernel has no BPF syscall (CONFIG_BPF_SYSCALL): bcgov needs a kernel built with BPF")
    return root
