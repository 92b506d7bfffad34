"""Loading probes with BCC, one at a time, so one that cannot load never stops the others."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from agent.kernel import declared_maps
from agent.kernel.tracefs import Tracefs
from probes.records import LayoutMismatch, check_layout
from probes.spec import PROBES_DIR, ProbeSpec

log = logging.getLogger("bcgov.agent.kernel.loader")


class ProbeLoadError(Exception):
    """A probe could not be compiled, verified or attached; the message names the fix. `code` is
    the short reason readiness exports (agent/metrics/readiness.py): missing_tracepoint, load_failed,
    layout_mismatch."""

    def __init__(self, message: str, code: str = "load_failed") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ProbePlan:
    """What a probe will be built with on this kernel, decided from tracefs alone."""

    spec: ProbeSpec
    missing: tuple[str, ...]            # required tracepoints absent: the probe cannot run
    defines: tuple[str, ...]
    missing_optional: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.missing

    def reason(self) -> str:
        """Why the probe cannot run, naming the missing tracepoints."""
        if not self.missing:
            return ""
        return (
            f"kernel lacks tracepoint {', '.join(self.missing)} "
            f"(see {self.spec.source_path.name}); the other probes still run"
        )


def plan(spec: ProbeSpec, tracefs: Tracefs, extra_defines: tuple[str, ...] = ()) -> ProbePlan:
    """Decide defines and feasibility for `spec` from the kernel's tracepoints and field layouts."""
    missing = tuple(tp for tp in spec.required if not tracefs.has(tp))
    defines = list(spec.defines) + list(extra_defines)
    absent = []
    for opt in spec.optional:
        if all(tracefs.has(tp) for tp in opt.tracepoints):
            defines.append(opt.define)
        else:
            absent.append(f"{opt.adds} (needs {', '.join(opt.tracepoints)})")
    for feat in spec.field_features:
        f = tracefs.fields(feat.tracepoint).get(feat.field)
        if f is not None and feat.type_contains in f.type:
            defines.append(feat.define)
    return ProbePlan(spec, missing, tuple(dict.fromkeys(defines)), tuple(absent))


@dataclass
class LoadedProbe:
    """A probe whose program is in the kernel and attached."""

    plan: ProbePlan
    bpf: Any

    @property
    def name(self) -> str:
        return self.plan.spec.name

    def stat(self, index: int) -> int:
        """Sum over CPUs of one slot of the probe's `stats` map (see bcgov_common.h)."""
        return int(sum(self.bpf["stats"][index]))

    def detach(self) -> None:
        """Stop the kernel from running the programs; maps and buffers stay readable."""
        if self.bpf is None:
            return
        for tp in list(getattr(self.bpf, "tracepoint_fds", {})):
            name = tp.decode() if isinstance(tp, bytes) else tp
            try:
                self.bpf.detach_tracepoint(name.encode())
            except Exception:  # already gone: nothing left to stop
                pass
        for tp in list(getattr(self.bpf, "raw_tracepoint_fds", {})):
            try:
                self.bpf.detach_raw_tracepoint(tp if isinstance(tp, bytes) else tp.encode())
            except Exception:  # already gone
                pass

    def close(self) -> None:
        """Detach and free the program; safe to call twice."""
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None


def cflags_for(plan_: ProbePlan) -> list[str]:
    """Compiler flags: the probes directory for shared headers, then the plan's defines."""
    return [f"-I{PROBES_DIR}", "-Wno-macro-redefined"] + [f"-D{d}" for d in plan_.defines]


def load(plan_: ProbePlan, bpf_class: Any | None = None) -> LoadedProbe:
    """Compile, verify and attach one probe, then check its record layouts and its declared maps
    (agent/kernel/declared_maps.py) against the C: a mismatch is ProbeLoadError(layout_mismatch)."""
    if not plan_.ready:
        raise ProbeLoadError(plan_.reason(), code="missing_tracepoint")
    if bpf_class is None:
        from bcc import BPF  # imported late: BCC is heavy and optional

        bpf_class = BPF
    spec = plan_.spec
    try:
        bpf = bpf_class(src_file=str(spec.source_path).encode(), cflags=cflags_for(plan_))
    except Exception as exc:  # BCC raises bare Exception for compile and verifier failures
        if spec.fallback is None or spec.fallback[0] in plan_.defines:
            raise ProbeLoadError(
                f"probe {spec.name} failed to compile or load: {exc}; check the kernel headers "
                "'bcgov agent probes' names (scripts/bootstrap.sh installs the node's and the bundled set)"
            ) from exc
        define, cost = spec.fallback
        log.warning("probe %s: the kernel refused it as built (%s); loading it again with %s: %s",
                    spec.name, str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__,
                    define, cost)
        return load(dataclasses.replace(plan_, defines=(*plan_.defines, define)), bpf_class)
    loaded = LoadedProbe(plan_, bpf)
    try:
        for tp, fn, define in spec.raw_tracepoints:  # after the autoloaded tracepoints: run after them
            if not define or define in plan_.defines:
                bpf.attach_raw_tracepoint(tp=tp.encode(), fn_name=fn.encode())
    except Exception as exc:  # BCC raises bare Exception when the kernel refuses
        loaded.close()
        raise ProbeLoadError(f"probe {spec.name}: cannot attach raw tracepoint {tp}: {exc} (kernel 4.17+ needed)") from exc
    try:
        # a wrong declaration refuses this probe now, instead of failing every scrape later (and the
        # maps the layouts and the ring buffer name exist before anything reads them)
        declared_maps.check(spec, bpf)
        for map_name, mirror in spec.layouts.items():
            check_layout(mirror, bpf[map_name].Leaf)
    except (LayoutMismatch, declared_maps.DeclarationMismatch) as exc:
        loaded.close()
        raise ProbeLoadError(f"probe {spec.name}: {exc}", code="layout_mismatch") from exc
    log.debug("loaded probe %s with %s", spec.name, plan_.defines)
    return loaded
