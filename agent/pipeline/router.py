"""probe -> event -> outputs: each probe's events go to the handler its spec declares.

The pipeline holds what every handler may use (`HandlerContext`: clock, identity, instruments,
span queue, event log, ids, span sampler, exemplars) and binds each probe's handler to it once
(`EventPipeline.handler(spec)`); the probe's reader thread then calls that function with every
decoded event. What an event becomes (a span, a log line, an exemplar) is the probe's to say
(e.g. probes/tcp_lifecycle.py `handler`); nothing here knows one probe from another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.export.event_log import EventLog
from agent.export.span_model import IdSource, SpanData
from agent.identity.cache import EnrichmentCache
from agent.identity.enricher import Enricher
from agent.metrics.exemplars import Exemplars
from agent.metrics.instruments import Instruments
from agent.pipeline.clock import MonotonicToWall
from agent.pipeline.sampling import SpanSampler
from probes.spec import ProbeSpec

Handle = Callable[[Any], None]  # one decoded event in, outputs written; runs on the reader thread


@dataclass(frozen=True)
class HandlerContext:
    """What a probe's handler factory (`ProbeSpec.handler(ctx)`) may use; shared by all probes."""

    clock: MonotonicToWall            # kernel monotonic ns -> wall-clock ns
    enricher: Enricher                # identity of a cgroup / process / peer
    identity: EnrichmentCache         # the enricher's answers memoised per cgroup and peer (hot path)
    instruments: Instruments          # the agent's own counters (own_connections, spans_sampled_out, ...)
    submit_span: Callable[[SpanData], None]  # the bounded span queue: drops and counts when full
    event_log: EventLog               # log lines (batched; the reader's after-batch flush writes them)
    ids: IdSource                     # trace and span ids
    sampler: SpanSampler              # which connections keep their span
    exemplars: Exemplars              # kept spans' ids by histogram family (for_family), attached at scrape
    own_pid: int | None               # the agent's own process: its connections are counted, not traced


class EventPipeline:
    """Binds probes' handlers to one context; every collaborator comes in through the constructor."""

    def __init__(
        self,
        clock: MonotonicToWall,
        enricher: Enricher,
        instruments: Instruments,
        submit_span: Callable[[SpanData], None],
        event_log: EventLog,
        ids: IdSource,
        sampler: SpanSampler | None = None,
        own_pid: int | None = None,
    ) -> None:
        self.context = HandlerContext(
            clock, enricher, EnrichmentCache(enricher), instruments, submit_span, event_log, ids,
            sampler or SpanSampler(), instruments.exemplars, own_pid,
        )

    def handler(self, spec: ProbeSpec, observers: Sequence[Handle] = ()) -> Handle:
        """The function `spec`'s reader calls with each decoded event: its handler bound to this
        pipeline's context, then each observer (e.g. the live summary). A probe without a handler
        only feeds the observers."""
        handle = spec.handler(self.context) if spec.handler is not None else None
        calls = ([handle] if handle is not None else []) + list(observers)
        if len(calls) == 1:
            return calls[0]  # the common case costs no extra call per event

        def handle_all(event: Any) -> None:
            for call in calls:
                call(event)
        return handle_all
