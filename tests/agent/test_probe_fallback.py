"""A probe the kernel refuses as built is loaded once more with its fallback define (tcp_lifecycle:
no span budget where BPF atomics are missing, before Linux 5.12), and the agent says what is lost."""

from __future__ import annotations

import ctypes
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from agent.kernel import loader
from probes import registry
from probes.spec import ProbeSpec

DEFINE = "BCGOV_NO_ATOMIC_FETCH"


class _RefusesAtomics:
    """Stands in for bcc.BPF: refuses a build without the fallback define as a 5.10 verifier would."""

    builds: list[list[str]] = []

    def __init__(self, src_file: bytes, cflags: list[str]) -> None:
        _RefusesAtomics.builds.append(cflags)
        if f"-D{DEFINE}" not in cflags:
            raise Exception("bpf: Failed to load program: Invalid argument\nBPF_ATOMIC uses invalid atomic opcode f1")
        self.funcs: dict[bytes, Any] = {}

    def __getitem__(self, name: str) -> Any:  # the `stats` array every probe has (the loader checks it)
        if name != "stats":
            raise KeyError(name)
        return SimpleNamespace(Key=ctypes.c_int, Leaf=ctypes.c_ulong * 2, max_entries=4)

    def cleanup(self) -> None:
        pass


def _plan(spec: ProbeSpec) -> loader.ProbePlan:
    return loader.ProbePlan(spec, missing=(), defines=("HAVE_X",), missing_optional=())


def test_a_refused_build_is_loaded_again_with_the_fallback_and_the_loss_logged(caplog: pytest.LogCaptureFixture) -> None:
    spec = ProbeSpec(name="p", summary="", required=(), fallback=(DEFINE, "no span budget"))
    _RefusesAtomics.builds = []
    with caplog.at_level(logging.WARNING, logger="bcgov.agent.kernel.loader"):
        probe = loader.load(_plan(spec), _RefusesAtomics)
    assert probe.plan.defines == ("HAVE_X", DEFINE)
    assert [f"-D{DEFINE}" in b for b in _RefusesAtomics.builds] == [False, True]
    assert "invalid atomic opcode" in caplog.text and "no span budget" in caplog.text


def test_without_a_fallback_a_refused_build_is_an_error_naming_the_refusal() -> None:
    spec = ProbeSpec(name="p", summary="", required=())
    _RefusesAtomics.builds = []
    with pytest.raises(loader.ProbeLoadError, match="(?s)probe p failed to compile or load: .*invalid atomic opcode"):
        loader.load(_plan(spec), _RefusesAtomics)
    assert len(_RefusesAtomics.builds) == 1


@pytest.mark.ebpf
def test_tcp_lifecycle_built_without_the_budget_loads_and_says_the_budget_is_off(caplog: pytest.LogCaptureFixture) -> None:
    from agent.kernel import preflight
    from agent.kernel.sampling import KernelSpanSampling
    from agent.kernel.tracefs import Tracefs

    plan = loader.plan(registry.get("tcp_lifecycle"), Tracefs(preflight.check()), (DEFINE,))
    probe = loader.load(plan)
    try:
        sampling = KernelSpanSampling(probe)
        assert not sampling.budget_enforced
        with caplog.at_level(logging.WARNING, logger="bcgov.agent.kernel.sampling"):
            sampling.apply_budget(1000)
        assert "not enforced" in caplog.text and sampling.budget_per_second == 0.0
    finally:
        probe.close()
