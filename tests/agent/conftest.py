"""One real agent per test session: compiling BCC programs takes seconds, so load them once."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from agent_harness import RunningAgent, started_agent  # noqa: E402


@pytest.fixture(scope="session")
def running_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    with started_agent(tmp_path_factory.mktemp("agent")) as agent:
        yield agent


@pytest.fixture
def cgroup() -> Iterator[Any]:
    from cgroups import test_cgroup

    with test_cgroup() as cg:
        yield cg


@pytest.fixture(params=["grpc", "http"])
def receiver(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The stand-in OTLP collector (tests/agent/otlp_receiver.py), once per protocol."""
    from otlp_receiver import OtlpReceiver

    r = OtlpReceiver(request.param)
    r.start()
    try:
        yield r
    finally:
        r.stop()
