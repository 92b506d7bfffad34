"""Whether the agent is ready, and the truth about every probe that is not up.

`/readyz` answers 200 only when every probe readiness requires is up. What it requires is the
config key ``ready_requires``: ``all`` (the default: every configured probe; a half-working agent
must not look ready) or a list of probe names (e.g. ``[tcp_lifecycle]`` on nodes known to lack
some tracepoints). The body names each probe's state and, for a down probe, why; the same reason is
exported as ``bcgov_agent_probe_down{probe,reason}`` (1 per down probe; reason is a short code:
missing_tracepoint, load_failed, layout_mismatch) and the verdict as ``bcgov_agent_ready``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class ProbeState:
    """One configured probe: up, or down with a short `code` and the full `reason`."""

    name: str
    up: bool
    code: str = ""
    reason: str = ""


class Readiness(Collector):
    """Readiness over the probe states the agent recorded at start-up."""

    def __init__(self, states: Sequence[ProbeState], requires: Sequence[str] | str = "all") -> None:
        self._states = list(states)
        names = [s.name for s in self._states]
        self.required = list(names) if requires == "all" else [n for n in requires]

    def ready(self) -> bool:
        up = {s.name for s in self._states if s.up}
        return bool(self._states) and all(name in up for name in self.required)

    def body(self) -> str:
        """Text for /readyz: the verdict, then one line per probe (why, for a down one)."""
        ok = self.ready()
        head = "ready" if ok else "not ready"
        lines = [f"{head}: requires {', '.join(self.required) or 'at least one probe'}"]
        for s in self._states:
            need = " (required)" if s.name in self.required else ""
            lines.append(f"{s.name}: up{need}" if s.up else f"{s.name}: down{need}: {s.code}: {s.reason}")
        return "\n".join(lines) + "\n"

    def collect(self) -> Iterator[GaugeMetricFamily]:
        down = GaugeMetricFamily(
            "bcgov_agent_probe_down", "1 for each probe that is not up, with why (see /readyz for the detail)",
            labels=["probe", "reason"])
        for s in self._states:
            if not s.up:
                down.add_metric([s.name, s.code or "load_failed"], 1.0)
        yield down
        yield GaugeMetricFamily(
            "bcgov_agent_ready", "1 when every probe readiness requires (ready_requires) is up", value=float(self.ready()))
