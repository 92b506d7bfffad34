"""The Dockerfile installs through scripts/bootstrap.sh (one source of truth) and runs the agent.

No Docker engine runs here, so the image is not built; instead the bootstrap switches the image
uses are run for real below (as root they only check, since this machine is bootstrapped)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

import manifests

DOCKERFILE = (manifests.BASE / "Dockerfile").read_text()
IMAGE_ENV = {"BCGOV_BOOTSTRAP_SERVERS": "0", "BCGOV_BOOTSTRAP_HOST": "0"}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_is_bookworm_and_runs_the_agent_on_all_addresses() -> None:
    ins = _instructions()
    assert ins[0] == ("FROM", "debian:bookworm")
    entry = [a for i, a in ins if i == "ENTRYPOINT"]
    assert entry == ['["bcgov", "agent", "run", "--metrics-addr", "0.0.0.0:9464"]']


def test_dockerfile_installs_through_bootstrap_with_the_image_switches() -> None:
    runs = [a for i, a in _instructions() if i == "RUN"]
    boot = [r for r in runs if "scripts/bootstrap.sh" in r]
    assert len(boot) == 1
    for k, v in IMAGE_ENV.items():
        assert f"{k}={v}" in boot[0]
    # Nothing else installs packages behind bootstrap's back.
    assert not any(re.search(r"\b(apt-get|pip) install\b", r) for r in runs)


def test_bootstrap_documents_every_switch_the_image_uses() -> None:
    script = (manifests.ROOT / "scripts" / "bootstrap.sh").read_text()
    for k in (*IMAGE_ENV, "BCGOV_VENV"):
        assert f"{k}" in script


@pytest.mark.skipif(os.geteuid() != 0, reason="bootstrap.sh refuses to run without root")
def test_bootstrap_runs_with_the_image_switches() -> None:
    """The Dockerfile's RUN step, minus the venv (that part is what every `make` target runs)."""
    env = {**os.environ, **IMAGE_ENV, "BCGOV_BOOTSTRAP_VENV": "0"}
    done = subprocess.run(["bash", str(manifests.ROOT / "scripts" / "bootstrap.sh")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
