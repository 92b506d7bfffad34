"""The probes bcgov knows, by name. A new probe is one more module listed here."""

from __future__ import annotations

from probes import block_io, oom, process, runqueue, tcp_lifecycle, tcp_reset, tcp_retransmit
from probes.spec import ProbeSpec

ALL: tuple[ProbeSpec, ...] = (
    tcp_lifecycle.SPEC,
    tcp_retransmit.SPEC,
    tcp_reset.SPEC,
    process.SPEC,
    oom.SPEC,
    block_io.SPEC,
    runqueue.SPEC,
)


def names() -> list[str]:
    """Names of every known probe, in load order."""
    return [s.name for s in ALL]


def get(name: str) -> ProbeSpec:
    """The spec called `name`; a clear error lists the known names otherwise."""
    for spec in ALL:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown probe {name!r}; known probes: {', '.join(names())}")
