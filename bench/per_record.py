"""Per-record cost: record a real stream of tcp_lifecycle ring-buffer records, then replay it
through the agent's user-space pipeline without the kernel.

Recording loads every probe in this process (so the kernel's per-program run times can be read
from /proc/self/fdinfo with BPF stats on: the per-program kernel cost), drives `ab` against nginx
and keeps each record's raw bytes. Replay runs three passes over the same bytes, each timed per
record with perf_counter_ns on one thread:
  decode   - bytes -> TcpConnection only
  full     - decode -> identity (cgroup path; no Kubernetes here) -> span + log line + histogram
  shed     - the same with the CPU budget's keep ratio at 0: decode -> identity -> histogram only
The span export thread runs concurrently, as in the agent; all-in CPU per record (process CPU over
the pass, export flushed) is reported next to the per-record times. Log lines are batched as the
agent's readers batch them: the event log's flush(LOG_FLUSH_AGE_S) after every REPLAY_BATCH records
(the agent's readers call it after each ring-buffer poll), which writes the held lines once the
oldest is 50 ms old; the write is timed with the record that ends the batch. Records go through
tcp_lifecycle's handler as the pipeline binds it for the probe's reader (EventPipeline.handler).

With a baseline commit (`--baseline COMMIT`), the same recorded bytes are also replayed by that
commit's own code (a git worktree, in a subprocess) before this code's passes, so old and new are
measured on the same records minutes apart; their passes are reported as "<pass> @ <commit>".
"""

from __future__ import annotations

import ctypes
import random
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.agent_proc import memory_kb
from bench.common import BenchError, ensure_tools, percentiles, say, wait_until
from bench.nginx import running_nginx

SAMPLES_KEPT = 2000  # raw per-record timings stored per pass (a uniform random subset)
REPLAY_BATCH = 16  # records per simulated ring-buffer poll (log lines are written out after each)


def record(connections: int) -> tuple[list[bytes], dict[str, Any]]:
    """Raw tcp_lifecycle records of `connections` loopback connections, and the kernel's costs."""
    import os

    from agent.config import AgentConfig
    from agent.kernel import loader, preflight
    from agent.kernel.tracefs import Tracefs
    from agent.selfcost.overhead import BpfCostCollector, BpfStats
    from probes import registry
    from probes.families import STAT_EMITTED, STAT_LOST

    ensure_tools("nginx", "ab")
    tracefs = Tracefs(preflight.check())
    extra = (f"RINGBUF_PAGES={AgentConfig().ring_buffer_pages}",)
    rss_before = memory_kb(os.getpid())["VmRSS"]
    probes: dict[str, loader.LoadedProbe] = {}
    not_loaded: dict[str, str] = {}
    t0 = time.monotonic()
    for spec in registry.ALL:
        try:
            probes[spec.name] = loader.load(loader.plan(spec, tracefs, extra))
        except loader.ProbeLoadError as exc:
            not_loaded[spec.name] = str(exc)
    load_s = time.monotonic() - t0
    rss_after = memory_kb(os.getpid())["VmRSS"]
    say(f"  loaded {len(probes)} probes in {load_s:.1f}s; RSS +{(rss_after - rss_before) / 1024:.0f} MB")
    if "tcp_lifecycle" not in probes:
        raise BenchError(f"tcp_lifecycle did not load: {not_loaded.get('tcp_lifecycle')}")
    stats = BpfStats()
    raw: list[bytes] = []
    stop = threading.Event()
    try:
        if not stats.enable():
            raise BenchError("cannot enable kernel BPF stats (needs root)")
        tcp = probes["tcp_lifecycle"]

        def keep(_ctx: object, data: int, size: int) -> int:
            raw.append(ctypes.string_at(data, size))
            return 0

        tcp.bpf[tcp.plan.spec.ring_buffer].open_ring_buffer(keep)
        def poll() -> None:
            while not stop.is_set():  # tcp_lifecycle submits without wakeups: consume after each poll
                tcp.bpf.ring_buffer_poll(20)
                tcp.bpf.ring_buffer_consume()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        costs = BpfCostCollector(probes)
        with running_nginx() as port:
            base_emitted, base_received = tcp.stat(STAT_EMITTED), len(raw)
            before = costs.per_program()
            say(f"  recording {connections} connections (ab -c 8)")
            r = subprocess.run(["ab", "-q", "-r", "-n", str(connections), "-c", "8", f"http://127.0.0.1:{port}/"],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise BenchError(f"ab failed: {r.stderr.strip()[-300:]}")
            wait_until(lambda: len(raw) + tcp.stat(STAT_LOST) >= tcp.stat(STAT_EMITTED), 60, "the recorder to catch up")
            after = costs.per_program()
            emitted = tcp.stat(STAT_EMITTED) - base_emitted
            received = len(raw) - base_received
            lost = tcp.stat(STAT_LOST)
    finally:
        stop.set()
        for p in probes.values():
            p.close()
        stats.restore()
    kernel = {}
    for key, (ns, cnt) in sorted(after.items()):
        b_ns, b_cnt = before.get(key, (0, 0))
        runs = cnt - b_cnt
        kernel[f"{key[0]}/{key[1]}"] = {"runs": runs, "run_ns": ns - b_ns, "ns_per_run": (ns - b_ns) / runs if runs else None}
    meta = {"connections": connections, "records_replayed": len(raw), "records_emitted_during_load": emitted,
            "records_received_during_load": received, "records_lost": lost,
            "probes_loaded": sorted(probes), "probes_not_loaded": not_loaded, "bcc_load_s": load_s,
            "bcc_rss_mb": (rss_after - rss_before) / 1024, "kernel_per_program": kernel}
    return raw, meta


def _pass(raw: list[bytes], step: Callable[[bytes], object], after_batch: Callable[[], None] | None = None) -> dict[str, Any]:
    times = []
    pc = time.perf_counter_ns
    for i, rec in enumerate(raw):
        t = pc()
        step(rec)
        if after_batch is not None and i % REPLAY_BATCH == REPLAY_BATCH - 1:
            after_batch()
        times.append(pc() - t)
    if after_batch is not None:
        after_batch()
    return _stats(times)


def _stats(times_ns: list[int]) -> dict[str, Any]:
    us = sorted(t / 1000 for t in times_ns)
    rng = random.Random(7)
    return {"n": len(us), "us": percentiles(us), "mean_us": sum(us) / len(us), "max_us": us[-1],
            "samples_us": sorted(rng.sample(us, min(SAMPLES_KEPT, len(us))))}


def replay(raw: list[bytes]) -> dict[str, Any]:
    """Time the three passes over the same recorded bytes."""
    from probes import tcp_lifecycle

    decode = tcp_lifecycle.SPEC.decoder
    assert decode is not None
    out: dict[str, Any] = {"decode": _pass(raw, decode)}
    with tempfile.TemporaryDirectory(prefix="bcgov-bench-replay-") as d:
        for name, keep in (("full", 1.0), ("shed", 0.0)):
            res = out[name] = _replay_through_handler(raw, Path(d), name, keep)
            say(f"  {name:>6}: p50 {res['us']['p50']:.1f} us, p99 {res['us']['p99']:.1f} us per record; "
                f"all-in {res['all_in_cpu_us_per_record']:.1f} us CPU per record")
    return out


def _replay_through_handler(raw: list[bytes], d: Path, name: str, keep: float) -> dict[str, Any]:
    """One pass: decode -> tcp_lifecycle's handler as the pipeline binds it for the probe's reader
    (span queued, log line held and flushed per batch, exemplar), the CPU budget's keep ratio `keep`."""
    from prometheus_client import CollectorRegistry

    from agent.export.event_log import EventLog
    from agent.export.queue import SpanQueue
    from agent.export.span_model import IdSource
    from agent.export.spans import JsonlFileExporter
    from agent.identity.pod_enricher import IdentityEnricher
    from agent.metrics.instruments import Instruments
    from agent.pipeline.clock import MonotonicToWall
    from agent.pipeline.router import EventPipeline
    from agent.pipeline.sampling import SpanSampler
    from agent.runtime import LOG_FLUSH_AGE_S
    from probes import tcp_lifecycle

    decode = tcp_lifecycle.SPEC.decoder
    assert decode is not None
    registry = CollectorRegistry()
    enricher = IdentityEnricher.for_node(registry)
    instruments = Instruments(registry, enricher)
    dropped = [0]
    exporter = JsonlFileExporter(str(d / f"{name}-spans.jsonl"), {"service.name": "bench"}, "bench")
    queue = SpanQueue(exporter, on_drop=lambda _r, n: dropped.__setitem__(0, dropped[0] + n))
    with open(d / f"{name}-events.jsonl", "a", encoding="utf-8") as log_file:
        sampler = SpanSampler()
        sampler.shed_keep = keep
        event_log = EventLog(log_file, batched=True)
        handle = EventPipeline(MonotonicToWall(), enricher, instruments, queue.submit, event_log, IdSource(),
                               sampler=sampler).handler(tcp_lifecycle.SPEC)
        cpu0 = time.process_time()
        res = _pass(raw, lambda rec: handle(decode(rec)), lambda: event_log.flush(LOG_FLUSH_AGE_S))
        event_log.flush()
        queue.shutdown()
        cpu = time.process_time() - cpu0
        event_log.close()
    enricher.stop()
    res["all_in_cpu_us_per_record"] = cpu / len(raw) * 1e6
    res["spans_dropped"] = dropped[0]
    with open(d / f"{name}-spans.jsonl", encoding="utf-8") as spans:
        res["spans_written"] = sum(1 for _ in spans)  # requests (batches)
    return res


def replay_at(commit: str, raw: list[bytes]) -> dict[str, Any]:
    """The passes as `commit`'s own code runs them (its bench/per_record.py replay), same records."""
    import json
    import pickle
    import sys

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="bcgov-bench-baseline-") as d:
        tree = Path(d) / "tree"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), commit],
                       check=True, capture_output=True, text=True)
        try:
            records = Path(d) / "records.pickle"
            records.write_bytes(pickle.dumps(raw))
            code = ("import json, pickle, sys; from bench.per_record import replay; "
                    f"print(json.dumps(replay(pickle.loads(open({str(records)!r}, 'rb').read()))))")
            r = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                raise BenchError(f"baseline replay at {commit} failed: {r.stderr.strip()[-400:]}")
            return json.loads(r.stdout.strip().splitlines()[-1])
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], capture_output=True)


def run(connections: int, baseline: str | None = None) -> dict[str, Any]:
    raw, meta = record(connections)
    if not raw:
        raise BenchError("no records recorded")
    passes: dict[str, Any] = {}
    if baseline:
        short = subprocess.run(["git", "rev-parse", "--short", baseline], capture_output=True, text=True,
                               check=True).stdout.strip()
        say(f"  replaying {len(raw)} records with the code at {short} (baseline)")
        passes.update({f"{name} @ {short}": res for name, res in replay_at(baseline, raw).items()})
    say(f"  replaying {len(raw)} records")
    passes = {**replay(raw), **passes}
    return {"params": {"connections": connections, "samples_kept_per_pass": SAMPLES_KEPT, "replay_batch": REPLAY_BATCH,
                       "baseline": baseline}, "recording": meta, "replay": passes}
