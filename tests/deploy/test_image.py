"""The images: one Dockerfile, two stages (agent, governor), both installed through
scripts/bootstrap.sh; and (marker `image`) the agent image built by `make image` and run for real
under podman with the DaemonSet's own container settings (tests/deploy/container_flags.py), with
and without the node's kernel header mounts. No registry is needed: the base image is made with
debootstrap and cached (scripts/image.sh)."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import agent_process
import container_flags
import manifests
import pytest
from servers import free_port

DOCKERFILE = (manifests.BASE / "Dockerfile").read_text()
IMAGE_ENV = {"BCGOV_BOOTSTRAP_SERVERS": "0", "BCGOV_BOOTSTRAP_HOST": "0", "BCGOV_EDITABLE": "0"}
STAGE_ENV = {"agent": {"BCGOV_EXTRAS": ""}, "governor": {"BCGOV_BOOTSTRAP_BCC": "0", "BCGOV_EXTRAS": "governor"}}
AGENT_IMAGE = "localhost/bcgov:0.1.0"
NODE_HEADER_PATHS = ("/lib/modules", "/usr/src")  # the optional hostPath mounts


def _stages() -> dict[str, list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage name, line continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for ln in lines:
        ins, args = ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]
        if ins == "FROM":
            current = args.split(" AS ")[-1].strip()
            stages[current] = []
        if current is not None:
            stages[current].append((ins, args))
    return stages


def test_one_dockerfile_two_stages_on_a_debian_base_agent_last() -> None:
    stages = _stages()
    assert list(stages) == ["governor", "agent"]  # the last stage is what a plain build makes
    assert re.search(r"^ARG BASE=debian:bookworm$", DOCKERFILE, re.M)
    for name, ins in stages.items():
        assert ins[0] == ("FROM", f"${{BASE}} AS {name}")
    assert [a for i, a in stages["agent"] if i == "ENTRYPOINT"] == [
        '["bcgov", "agent", "run", "--metrics-addr", "0.0.0.0:9464"]']
    assert [a for i, a in stages["governor"] if i == "ENTRYPOINT"] == ['["bcgov", "governor", "run"]']


@pytest.mark.parametrize("stage", ["agent", "governor"])
def test_each_stage_installs_through_bootstrap_with_its_switches(stage: str) -> None:
    runs = [a for i, a in _stages()[stage] if i == "RUN"]
    boot = [r for r in runs if "scripts/bootstrap.sh" in r]
    assert len(boot) == 1
    for k, v in {**IMAGE_ENV, **STAGE_ENV[stage]}.items():
        assert re.search(rf"(^|\s){k}={re.escape(v)}(\s|$)", boot[0]), (k, v)
    # Nothing else installs packages behind bootstrap's back.
    assert not any(re.search(r"\b(apt-get|pip) install\b", r) for r in runs)
    # The host's CA certificates reach the build as a secret mount only, never a layer.
    assert "--mount=type=secret,id=hostca" in boot[0]
    assert not re.search(r"^(COPY|ADD)\b.*(ca-certificates|\.crt)", DOCKERFILE, re.M)


def test_bootstrap_documents_every_switch_the_images_use() -> None:
    script = (manifests.ROOT / "scripts" / "bootstrap.sh").read_text()
    for k in (*IMAGE_ENV, *STAGE_ENV["governor"], "BCGOV_VENV"):
        assert f"{k}" in script


@pytest.mark.skipif(os.geteuid() != 0, reason="bootstrap.sh refuses to run without root")
def test_bootstrap_runs_with_the_image_switches() -> None:
    """The agent stage's RUN step, minus the venv (that part is what every `make` target runs)."""
    env = {**os.environ, **IMAGE_ENV, "BCGOV_BOOTSTRAP_VENV": "0"}
    done = subprocess.run(["bash", str(manifests.ROOT / "scripts" / "bootstrap.sh")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# -- the real image, run the way the DaemonSet runs it ---------------------------------------------

def _podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} ... failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


@pytest.fixture(scope="session")
def agent_image() -> str:
    """`make image` once per session (its base image and podman's layer cache make reruns quick)."""
    done = subprocess.run(["make", "-s", "image"], cwd=manifests.ROOT, capture_output=True, text=True,
                          timeout=1800, env={**os.environ, "BCGOV_IMAGE_TARGETS": "agent"})
    assert done.returncode == 0, f"make image failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return AGENT_IMAGE


@pytest.fixture
def container(agent_image: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, container_flags.ContainerRun]]:
    """The agent container, started with flags derived from agent-daemonset.yaml; always removed."""
    node_headers: bool = request.param
    ds = manifests.one("DaemonSet", "bcgov-agent")
    cms = {d["metadata"]["name"]: d for d in manifests.by_kind("ConfigMap")}
    run = container_flags.derive(ds, cms, tmp_path, free_port(),
                                 skip_host_paths=() if node_headers else NODE_HEADER_PATHS)
    name = f"bcgov-image-test-{uuid.uuid4().hex[:10]}"
    try:
        _podman("run", "--detach", "--name", name, *run.flags, agent_image, *run.args)
        yield name, f"http://127.0.0.1:{run.host_port}", run
    finally:
        _podman("rm", "--force", "--time", "0", name, check=False)
        assert name not in _podman("ps", "--all", "--format", "{{.Names}}").stdout


def _alive(name: str) -> bool:
    return _podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip() == "true"


@pytest.mark.image
@pytest.mark.ebpf
@pytest.mark.parametrize("container", [True, False], ids=["node-headers", "no-node-headers"], indirect=True)
def test_agent_container_runs_with_the_daemonsets_settings(container: tuple[str, str, container_flags.ContainerRun]) -> None:
    name, base_url, run = container
    logs = lambda: _podman("logs", name, check=False).stderr + _podman("logs", name, check=False).stdout  # noqa: E731
    body = agent_process.wait_ready(base_url, lambda: _alive(name), logs)
    assert body.startswith("ready: requires ")
    started = logs()
    node_headers = "/lib/modules" in run.host_paths
    if node_headers:
        expected = "node headers at /lib/modules/"
    elif Path("/sys/kernel/kheaders.tar.xz").exists():  # the container sees the host's sysfs
        expected = "kheaders headers at /sys/kernel/kheaders.tar.xz"
    else:
        expected = "bundled headers at /usr/local/share/bcgov/kernel-headers"
    assert expected in started, started[-3000:]

    def spans() -> str:
        # the spans file lives in the var emptyDir (a tmpfs here): read it inside the container
        done = _podman("exec", name, "sh", "-c", "cat /opt/bcgov/var/spans.jsonl 2>/dev/null", check=False)
        return done.stdout

    agent_process.check_running_agent(base_url, spans)
    _podman("stop", "--time", str(run.grace_seconds), name, timeout=run.grace_seconds + 30)
    state = _podman("inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", name).stdout.split()
    assert state == ["0", "false"], logs()[-3000:]
    assert "agent stopped after" in logs()


@pytest.mark.image
def test_host_ca_certificates_stay_out_of_the_image(agent_image: str) -> None:
    """The build trusts the host's CAs (a TLS-inspecting proxy) through a secret mount only: no line
    of them is anywhere in the image. Control: a root every public bundle carries is found."""
    host_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if not host_cas:
        pytest.skip("this host trusts no extra CA certificates")
    # a middle line of each PEM body: 64 base64 characters no other certificate shares
    lines = [c.read_text().splitlines()[5] for c in host_cas]
    control = "ISRG Root X1"  # in certifi's bundle, which requests installs into the venv
    patterns = " ".join(f"-e '{ln}'" for ln in [*lines, control])
    found = _podman("run", "--rm", *container_flags.HOST_FLAGS, "--network", "none", "--entrypoint", "sh", agent_image,
                    "-c", f"grep -rlF {patterns} / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev; true").stdout
    files = found.split()
    assert any(f.endswith("certifi/cacert.pem") for f in files), files  # the search works
    for ln, ca in zip(lines, host_cas, strict=True):
        hits = _podman("run", "--rm", *container_flags.HOST_FLAGS, "--network", "none", "--entrypoint", "sh",
                       agent_image, "-c", f"grep -rlF -e '{ln}' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev; true")
        assert hits.stdout.split() == [], f"{ca} is in the image: {hits.stdout}"

