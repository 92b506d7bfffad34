"""Shared test configuration: tests that need root fail loudly instead of skipping quietly.

A test marked `ebpf` or `image` run without root is reported as *failed*, with one line that says
why and how to run it, before any of its fixtures start (they would load BPF or run podman). An
xfail or a skip would let `make test` pass on a machine where the real-kernel tier never ran.
(tests/test_needs_root.py runs this file as an unprivileged user to prove it.)
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

ROOT_MARKERS = ("ebpf", "image")
NEEDS_ROOT = "needs root for BPF, tracefs, cgroups and podman: run as root, e.g. sudo make test"


def _root_marker(item: pytest.Item) -> str | None:
    """The first root-only marker on `item` when this run is not root, else None."""
    if os.geteuid() == 0:
        return None
    return next((name for name in ROOT_MARKERS if item.get_closest_marker(name)), None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # tryfirst: fail before pytest's own setup starts the test's fixtures
    if (marker := _root_marker(item)) is not None:
        pytest.fail(f"marked {marker}: {NEEDS_ROOT}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # A failure in setup counts as an "error"; this test did not fail to set up, it cannot run here.
    if call.when == "setup" and report.failed and _root_marker(item) is not None:
        report.when = "call"
    return report


@pytest.fixture(scope="session")
def real_stack(tmp_path_factory: pytest.TempPathFactory):  # -> Iterator[realstack.RealStack]
    """The real agent + stand-in pod + workloads + Prometheus of tests/realstack.py, built once and
    shared by the dashboard and evidence checks (loading the BPF programs takes seconds)."""
    import realstack

    with realstack.start(tmp_path_factory.mktemp("realstack")) as stack:
        yield stack
