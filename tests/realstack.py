"""A real stack for end-to-end checks of what users look at (dashboards, evidence bundles).

- the agent with every registered probe, on this kernel, with pod identity from a STAND-IN
  kube-apiserver (tests/agent/identity/identity_standin_apiserver.py: no real API server can run
  here; it speaks the real list/watch wire format) that knows one pod, `payments/ledger-0`;
- that pod made real on the node: a kubepods-style cgroup2 directory carrying its uid and container
  id, a cgroup v1 memory cgroup with a 64 MiB limit, and a loopback address (127.0.0.77) as its IP;
- real workloads in those cgroups, in two rounds so every counter increases between scrapes:
  23 connections, a reset connection, a refused connect, an exec whose argv carries a planted
  secret and exits 3, and a real memcg OOM kill;
- Debian's Prometheus scraping the agent every second (exemplar storage on), with `node` added the
  way the PodMonitor (deploy/daemonset/monitors.yaml) adds it.

Built once per session by the `real_stack` fixture (tests/conftest.py): loading the BPF programs
takes seconds. Once the rounds are scraped (and two more scrapes settled the tail) the agent is
stopped, so the rest of the session does not pay for a second agent; tests evaluate queries at
`marks["final"]`, before it stopped, and read the files it flushed. Prometheus keeps the data until
the session ends. Everything is removed on exit, also when setup fails half-way.

Kernel-side counts are exact, so setup waits for every connection of a round to be counted; records
travel to user space through a ring buffer that a connection flood elsewhere on the host can
overflow (counted as lost), so it waits only for some of each round's records to arrive there.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import servers
import yaml

TESTS = Path(__file__).resolve().parent
WORKLOAD = TESTS / "realstack_workload.py"
sys.path.insert(0, str(TESTS / "agent" / "identity"))

NODE = "node-1"
NAMESPACE, POD, WORKLOAD_NAME, TIER = "payments", "ledger-0", "ledger", "oltp"
POD_IP = "127.0.0.77"  # all of 127/8 is local: the pod's own address, distinct from other tests'
JOB = "bcgov-agent"
N_CONNECTIONS = 23  # prime: a count that cannot happen by accident
ROUNDS = 2
MEMORY_LIMIT = 64 << 20
OOM_MB = 512
EXEC_EXIT_CODE = 3
UNIFIED = Path("/sys/fs/cgroup/unified") if os.path.isdir("/sys/fs/cgroup/unified") else Path("/sys/fs/cgroup")
MEMORY_V1 = Path("/sys/fs/cgroup/memory")
OPTIONAL_METRICS = ("bcgov_block_io_latency_seconds", "bcgov_runqueue_latency_seconds")
TIMEOUT_S = 60.0


@dataclass
class RealStack:
    """Handles on the running stack and what its workloads did (Unix times in `marks`)."""

    agent: Any
    metrics_url: str
    spans_path: Path
    log_path: Path
    prom: servers.PrometheusServer
    pod_uid: str
    cgroup_id: int
    secret: str
    t0: float
    marks: dict[str, float] = field(default_factory=dict)
    optional_metrics: tuple[str, ...] = ()  # of OPTIONAL_METRICS, those the agent exported

    def scrape(self) -> str:
        """The agent's /metrics now (only while the stack is being built: the agent stops after)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            return resp.read().decode()

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in _complete_lines(self.log_path)]

    def pod_logs(self, body: str) -> list[dict[str, Any]]:
        """The pod's event log lines with this body ("oom kill", "process exec", ...)."""
        return [r for r in self.logs() if r.get("body") == body and r["attributes"].get("k8s.pod.name") == POD]

    def pod_spans(self) -> list[dict[str, Any]]:
        """The pod's spans written so far (OTLP JSON span objects), out of the agent's spans file."""
        out = []
        for line in _complete_lines(self.spans_path):
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        if any(a["key"] == "k8s.pod.name" and a["value"].get("stringValue") == POD for a in sp["attributes"]):
                            out.append(sp)
        return out


def _complete_lines(path: Path) -> list[str]:
    """Lines a writer has finished: the agent may be mid-line while a test reads."""
    text = path.read_text() if path.exists() else ""
    return [line for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]


def pod_object(uid: str, container_id: str) -> dict[str, Any]:
    """The pod as the API server returns it: a StatefulSet pod (stable name, so `pod` stays a
    label) in the oltp tier, on this node, with the pod's loopback address as its IP."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": POD, "namespace": NAMESPACE, "uid": uid, "resourceVersion": "10",
                     "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"app": WORKLOAD_NAME, "bcgov.io/tier": TIER},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": WORKLOAD_NAME,
                                          "uid": str(uuid.uuid4()), "controller": True}]},
        "spec": {"nodeName": NODE, "containers": [{"name": WORKLOAD_NAME, "image": "registry.example/ledger:1"}]},
        "status": {"phase": "Running", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}], "qosClass": "BestEffort",
                   "containerStatuses": [{"name": WORKLOAD_NAME, "containerID": f"containerd://{container_id}",
                                          "image": "registry.example/ledger:1", "imageID": "registry.example/ledger@sha256:" + "0" * 64,
                                          "ready": True, "restartCount": 0, "started": True,
                                          "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}}]},
    }


class PodCgroups:
    """The pod's cgroups on this node: a kubepods-style cgroup2 path (identity) under a private
    base directory, and a v1 memory cgroup with a limit (OOM kills). `run` starts commands in both."""

    def __init__(self, uid: str, container_id: str) -> None:
        base = f"bcgov-test-{secrets.token_hex(4)}"
        self.base = UNIFIED / base
        slice_ = f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
        self.path = self.base / "kubepods.slice" / "kubepods-besteffort.slice" / slice_ / f"cri-containerd-{container_id}.scope"
        self.memory = MEMORY_V1 / base
        try:
            self.path.mkdir(parents=True)
            self.id = os.stat(self.path).st_ino
            self.memory.mkdir()
            (self.memory / "memory.limit_in_bytes").write_text(str(MEMORY_LIMIT))
        except OSError:
            self.remove()  # what was made so far; the caller never got an object to clean up
            raise

    def _enter(self) -> None:
        # Runs in the child between fork and exec, so the exec itself happens inside the pod.
        pid = str(os.getpid())
        (self.path / "cgroup.procs").write_text(pid)
        (self.memory / "cgroup.procs").write_text(pid)

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, preexec_fn=self._enter, capture_output=True, text=True, timeout=TIMEOUT_S)

    def workload(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, str(WORKLOAD), *args])

    def remove(self) -> None:
        """Remove the directories deepest first, waiting for exited processes to leave them."""
        dirs = [self.path, *self.path.parents]
        dirs = dirs[: dirs.index(self.base) + 1] + [self.memory]
        for d in dirs:
            deadline = time.monotonic() + 10
            while d.exists():
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)  # poll: the kernel frees an emptied cgroup asynchronously


def _round(cg: PodCgroups, secret: str) -> dict[str, Any]:
    """One round of the pod's workload; returns what each step reported."""
    out: dict[str, Any] = {}
    r = cg.workload("tcp", POD_IP, str(N_CONNECTIONS))
    assert r.returncode == 0, r.stderr
    out["tcp"] = json.loads(r.stdout)
    r = cg.workload("reset", POD_IP)
    out["reset"] = json.loads(r.stdout)
    assert out["reset"]["error"] == "ConnectionResetError", r
    r = cg.workload("refused", POD_IP)
    out["refused"] = json.loads(r.stdout)
    assert out["refused"]["refused"], r
    # A process whose command line carries a secret: it must never leave the node in clear text.
    r = cg.run(["/bin/sh", "-c", f"exit {EXEC_EXIT_CODE}", "ledger-migrate", f"--password={secret}"])
    assert r.returncode == EXEC_EXIT_CODE, r
    r = cg.workload("oom", str(OOM_MB))
    assert r.returncode == -9, f"expected an OOM kill (SIGKILL), got {r.returncode}: {r.stderr[-500:]}"
    out["oom_done"] = time.time()
    return out


def _block_io(directory: Path) -> None:
    """Some real block I/O for the block I/O probe: write and fsync 4 MiB, then remove it."""
    path = directory / "block-io.bin"
    with open(path, "wb") as f:
        for _ in range(4):
            f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
    path.unlink()


@contextlib.contextmanager
def start(tmp: Path) -> Iterator[RealStack]:
    """Bring the whole stack up, run the workload rounds, yield it; tear everything down after."""
    from identity_standin_apiserver import StandInAPIServer, make_self_signed_cert, write_kubeconfig
    from prometheus_client import CollectorRegistry

    from agent.config import AgentConfig
    from agent.export.spans import JsonlFileExporter
    from agent.identity.pod_enricher import IdentityEnricher
    from agent.kernel import preflight
    from agent.kernel.tracefs import Tracefs
    from agent.runtime import Agent, AgentParts

    uid, container_id = str(uuid.uuid4()), secrets.token_hex(32)
    secret = f"planted-{secrets.token_hex(6)}"
    with contextlib.ExitStack() as stack:
        api = StandInAPIServer({"metadata": {"resourceVersion": "10"}, "items": [pod_object(uid, container_id)]}, {})
        cert, key = make_self_signed_cert(str(tmp))
        url = api.start(cert, key)
        stack.callback(api.stop)
        kubeconfig = tmp / "kubeconfig"
        write_kubeconfig(str(kubeconfig), url, cert)

        registry = CollectorRegistry()
        enricher = IdentityEnricher.for_node(registry, NODE, str(kubeconfig), None)
        stack.callback(enricher.stop)
        assert enricher.wait_synced(TIMEOUT_S), "the pod watch never synced with the stand-in API server"

        # every connection a span: another load on the machine must not spend the node's span budget
        cfg = AgentConfig(metrics_addr="127.0.0.1:0", spans_file=str(tmp / "spans.jsonl"), node_name=NODE,
                          span_budget_per_second=0.0)
        cfg.validate()
        log_path = tmp / "events.jsonl"
        log_stream = io.TextIOWrapper(open(log_path, "ab", buffering=0), encoding="utf-8", line_buffering=True)  # noqa: SIM115 (closed by the stack's callback below)
        stack.callback(log_stream.close)
        resource = {"service.name": "bcgov-agent", "host.name": NODE}
        parts = AgentParts(registry=registry, enricher=enricher, event_stream=log_stream,
                           span_exporter=JsonlFileExporter(cfg.spans_file, resource, "test"))
        agent = Agent(cfg, Tracefs(preflight.check()), parts)
        stopped = False

        def stop_agent() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                agent.stop()

        stack.callback(stop_agent)
        agent.start()
        assert agent._server is not None
        host, port = agent._server.address
        down = [r for r in agent.reports if not r.up]
        assert not down, f"probes failed to load: {[(r.name, r.reason) for r in down]}"

        # `node` as the PodMonitor sets it from the pod's node name (deploy/daemonset/monitors.yaml).
        cfg_obj = yaml.safe_load(servers.scrape_config(f"{host}:{port}", job=JOB))
        cfg_obj["scrape_configs"][0]["static_configs"][0]["labels"] = {"node": NODE}
        # Exemplar storage on: latency panels show the exemplars' trace_ids (Grafana -> Tempo).
        prom = stack.enter_context(servers.start_prometheus(yaml.safe_dump(cfg_obj, sort_keys=False), tmp,
                                                            extra_args=["--enable-feature=exemplar-storage"]))

        cg = PodCgroups(uid, container_id)
        stack.callback(cg.remove)
        rs = RealStack(agent, f"http://{host}:{port}/metrics", Path(cfg.spans_file), log_path, prom, uid, cg.id,
                       secret, time.time())
        prom.wait_for_first_scrape(JOB)
        text = rs.scrape()
        rs.optional_metrics = tuple(m for m in OPTIONAL_METRICS if m in text)
        observed = 0.0
        for n in range(1, ROUNDS + 1):
            rs.marks[f"round{n}_start"] = time.time()
            done = _round(cg, secret)
            rs.marks[f"oom{n}_done"] = done["oom_done"]
            if "bcgov_block_io_latency_seconds" in rs.optional_metrics:
                _block_io(tmp)
            observed = _wait_for_round(rs, n, observed)
            rs.marks[f"round{n}_end"] = time.time()
            prom.wait_for_scrape_after(JOB, rs.marks[f"round{n}_end"])
        # Two more scrapes: a query range whose steps are 1 s apart then has steps after the sample
        # that carries the last round, as it has when an operator looks after an incident.
        for _ in range(2):
            prom.wait_for_scrape_after(JOB, time.time())
        rs.marks["final"] = time.time()
        _wait_for_spans(rs)
        stop_agent()  # flushes spans and the event log
        yield rs


def _wait_for_round(rs: RealStack, n: int, observed_before: float) -> float:
    """Until the agent has handled round `n`: its OOM kills and execs logged, every connection
    counted in the kernel and some of them observed in the duration histogram (user space), so the
    next scrape carries the round. Returns the histogram's count."""
    from prometheus_client.parser import text_string_to_metric_families

    normal = {"direction": "active", "outcome": "normal", "namespace": NAMESPACE, "pod": POD}

    def seen() -> dict[str, float]:
        samples = [s for fam in text_string_to_metric_families(rs.scrape()) for s in fam.samples]

        def total(name: str, **labels: str) -> float:
            return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

        execs = [r for r in rs.pod_logs("process exec") if "ledger-migrate" in r["attributes"].get("process.command_args", [])]
        return {"oom kill lines": len(rs.pod_logs("oom kill")), "secret exec lines": len(execs),
                "normal active connections counted": total("bcgov_tcp_connections_total", **normal),
                "normal active connections observed": total("bcgov_tcp_connection_duration_seconds_count", **normal),
                # for the diagnosis when the wait times out: a flood elsewhere overflows the ring buffer
                "tcp records lost": total("bcgov_agent_events_lost_total", probe="tcp_lifecycle")}

    def handled() -> dict[str, float] | None:
        s = seen()
        ok = (s["oom kill lines"] >= n and s["secret exec lines"] >= n
              and s["normal active connections counted"] >= n * N_CONNECTIONS
              and s["normal active connections observed"] > observed_before)
        return s if ok else None

    done = servers.poll(handled, TIMEOUT_S, f"the agent to handle workload round {n}", lambda: f"seen: {seen()}")
    return done["normal active connections observed"]


def _wait_for_spans(rs: RealStack) -> None:
    """The span queue writes asynchronously: wait for a reset connection's span from every round."""

    def resets() -> int:
        return sum(1 for sp in rs.pod_spans() if any(e["name"] == "tcp.reset" for e in sp.get("events", [])))

    servers.poll(lambda: resets() >= ROUNDS, TIMEOUT_S, "the reset connections' spans", lambda: f"{resets()} found")
