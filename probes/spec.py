"""The declarative description of a probe: what it needs from the kernel and what it yields.

A probe is `probes/<name>.bpf.c` plus a `ProbeSpec` in `probes/<name>.py`. The spec names the
tracepoints the program cannot run without, the optional ones that add detail (each switched on
with a `-D` define when tracefs has it), the ring buffer records it emits (ctypes layouts checked
against BCC's view of the C struct at load time) and a decoder turning raw bytes into events.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probes.families import Declaration

PROBES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Optional:
    """Tracepoints that add detail; all present -> `define` is passed to the compiler."""

    tracepoints: tuple[str, ...]
    define: str
    adds: str


@dataclass(frozen=True)
class FieldFeature:
    """A compile-time switch chosen from a tracepoint's field layout (feature, not version)."""

    tracepoint: str
    field: str
    define: str
    type_contains: str = ""


@dataclass(frozen=True)
class Tally:
    """What a probe's events add to the live terminal summary of `bcgov agent run` (agent/summary.py)."""

    counts: tuple[str, ...]                      # caption entries, in order ("failed connects", ...)
    count: Callable[[Any], tuple[int, ...]]      # an event's amount for each of `counts`
    # ((process name, pid), bytes): the event's row in the top-talkers table
    talker: Callable[[Any], tuple[tuple[str, int], int]] | None = None
    # a short name of the event; the last few are listed after the last of `counts`
    recent: Callable[[Any], str] | None = None


@dataclass(frozen=True)
class ProbeSpec:
    """Everything the loader and the agent need to know about one probe."""

    name: str
    summary: str
    required: tuple[str, ...]
    optional: tuple[Optional, ...] = ()
    field_features: tuple[FieldFeature, ...] = ()
    # layout map name in the C program -> ctypes mirror of its value struct
    layouts: Mapping[str, type[ctypes.Structure]] = field(default_factory=dict)
    ring_buffer: str | None = None
    decoder: Callable[[bytes], object] | None = None
    defines: tuple[str, ...] = ()
    # (raw tracepoint, function, define): attached by the loader after the tracepoint programs, so
    # on the same event each runs after them (BCC's autoload would attach raw tracepoints first);
    # only when `define` is "" or one of the plan's defines (its tracepoint exists, the C has it)
    raw_tracepoints: tuple[tuple[str, str, str], ...] = ()
    # (define, what it costs): when the kernel refuses the program as built, the loader tries once
    # more with this define, which leaves out a feature the kernel may lack, and logs what is lost
    fallback: tuple[str, str] | None = None
    # the metric families its maps feed and the lookups their labels use (probes/families.py:
    # CounterFamily, HistogramFamily, IndexedCounter, StatCounter, PortOwners), collected generically
    # by agent/metrics/collectors.py
    metrics: tuple[Declaration, ...] = ()
    # The event's outputs: called once with the pipeline's HandlerContext (agent/pipeline/router.py),
    # it returns the function the probe's reader thread calls with each decoded event.
    handler: Callable[[Any], Callable[[Any], None]] | None = None
    tally: Tally | None = None  # what its events add to the live terminal summary (agent/summary.py)
    # Run by the runtime once the probe is attached: `on_attached(loaded probe, ProbeServices)`
    # (agent/runtime.py) sets up what the probe needs in the kernel and returns the Prometheus
    # collectors it brings.
    on_attached: Callable[[Any, Any], Sequence[Any]] | None = None
    # Where `<name>.bpf.c` is: probes/ for bcgov's own, the spec's folder for one kept elsewhere
    # (tests/probes/example_probe/). Shared headers are always found in probes/ (loader's -I).
    source_dir: Path = PROBES_DIR

    @property
    def source_path(self) -> Path:
        """Path of the probe's BPF C source."""
        return self.source_dir / f"{self.name}.bpf.c"

    def tracepoints(self) -> tuple[str, ...]:
        """Every tracepoint the probe may attach, required first."""
        return self.required + tuple(tp for o in self.optional for tp in o.tracepoints)
