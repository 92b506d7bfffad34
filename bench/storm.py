"""Connection storm: nginx on loopback, new TCP connection per request, without and with the agent.

Saturation is `ab -c 16` for a fixed time (closed loop: as fast as it goes). Paced rates use
bench/paced_client.py (open loop, latency from each request's scheduled start), because neither
`ab` nor `wrk` can pace and wrk2 is not in Debian. Runs alternate in blocks: pair k runs every rate
without the agent then with it (even k) or the other way round (odd k), so drift in the shared
machine's load hits both sides. The agent is a real `bcgov agent run` subprocess with every probe
and `bpf_stats: true`; its CPU comes from /proc/<pid>/stat, its record counts and per-probe kernel
run times from its own /metrics, taken after it has drained its ring buffers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import agent_proc, peer
from bench.agent_proc import AgentProcess, total
from bench.common import BenchError, ensure_tools, say, summary
from bench.nginx import running_nginx

SATURATION = "saturation"
AB_CONCURRENCY = 16
PACED_WORKERS = 2
AGENT_CONFIG = "agent:\n  bpf_stats: true\n"
BUDGET_CORES = 0.25
IDLE_S = 3.0


PEER = "peer"


def sides(probes: list[str] | None = None) -> dict[str, str | None]:
    """Each side of a round: no agent, the peer (BCC's tcplife-bpfcc, bench/peer.py), the agent as
    shipped (span budget on), the agent with every connection a span (span_budget_per_second: 0), the
    agent held to a CPU budget. None: no agent config (without, peer)."""
    cfg = AGENT_CONFIG + (f"  probes: [{', '.join(probes)}]\n" if probes else "")
    return {"without": None, PEER: None, "with": cfg, "all_spans": cfg + "  span_budget_per_second: 0\n",
            "budget": cfg + f"  cpu_budget: {BUDGET_CORES}\n  cpu_budget_window: 1.0\n"}



def ab(port: int, seconds: float) -> dict[str, Any]:
    """Closed-loop saturation with ApacheBench: conn/s and latency percentiles (s)."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as csv:
        r = subprocess.run(["ab", "-q", "-r", "-t", str(seconds), "-n", "100000000", "-c", str(AB_CONCURRENCY),
                            "-e", csv.name, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=seconds + 60)
        if r.returncode != 0:
            raise BenchError(f"ab failed: {r.stderr.strip()[-300:]}")
        pct = {}
        for line in Path(csv.name).read_text().splitlines()[1:]:
            p, ms = line.split(",")
            pct[int(p)] = float(ms) / 1000
    fields = {}
    for line in r.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip().split()[0] if value.strip() else ""
    return {"made": int(fields["Complete requests"]), "failed": int(fields["Failed requests"]),
            "conn_per_s": float(fields["Requests per second"]), "p50_s": pct[50], "p99_s": pct[99]}


def paced(port: int, rate: int, seconds: float) -> dict[str, Any]:
    """Open-loop paced load at `rate` new connections per second."""
    r = subprocess.run([sys.executable, "-m", "bench.paced_client", "127.0.0.1", str(port), str(rate), str(seconds),
                        str(PACED_WORKERS)], capture_output=True, text=True, timeout=seconds + 120, cwd=agent_proc.REPO)
    if r.returncode != 0:
        raise BenchError(f"paced client failed: {r.stderr.strip()[-300:]}")
    out = json.loads(r.stdout)
    return {"made": out["completed"], "failed": out["errors"], "late": out["late"], "conn_per_s": out["achieved_rate"],
            "p50_s": out["p50_s"], "p99_s": out["p99_s"]}


def load(port: int, rate: int | str, seconds: float) -> dict[str, Any]:
    return ab(port, seconds) if rate == SATURATION else paced(port, int(rate), seconds)


def _delta(after: dict, before: dict, name: str, **match: str) -> float:
    return total(after["metrics"], name, **match) - total(before["metrics"], name, **match)


def agent_cost(before: dict, after: dict, made: int, seconds: float) -> dict[str, Any]:
    """What the agent spent on one load window, from two drained snapshots."""
    cpu = after["cpu_s"] - before["cpu_s"]
    probes = sorted({p for (n, labels) in after["metrics"]
                     if n == "bcgov_agent_bpf_runs_total" and (p := dict(labels).get("probe")) is not None})
    bpf = {}
    for p in probes:
        runs = _delta(after, before, "bcgov_agent_bpf_runs_total", probe=p)
        secs = _delta(after, before, "bcgov_agent_bpf_run_seconds_total", probe=p)
        bpf[p] = {"runs": int(runs), "run_seconds": secs, "ns_per_run": secs * 1e9 / runs if runs else None}
    received = _delta(after, before, "bcgov_agent_events_total")
    lost = _delta(after, before, "bcgov_agent_events_lost_total")
    return {
        "cpu_s": cpu, "cpu_s_per_10k_conn": cpu / made * 1e4 if made else None,
        "cores": cpu / seconds,  # the load's work, drained afterwards, over the load's duration
        "records_emitted": int(received + lost), "records_received": int(received), "records_lost": int(lost),
        "tcp_records_lost": int(_delta(after, before, "bcgov_agent_events_lost_total", probe="tcp_lifecycle")),
        "kernel_counted_passive": int(_delta(after, before, "bcgov_tcp_connections_total", direction="passive")),
        "spans_dropped": int(_delta(after, before, "bcgov_agent_spans_dropped_total")),
        "spans_sampled_out": int(_delta(after, before, "bcgov_agent_spans_sampled_out_total")),
        "spans_withheld": int(_delta(after, before, "bcgov_agent_spans_withheld_total")),
        "span_keep_ratio_after": total(after["metrics"], "bcgov_agent_span_keep_ratio") if any(
            n == "bcgov_agent_span_keep_ratio" for n, _ in after["metrics"]) else None,
        "drained": after.get("drained"), "rss_kb": after.get("VmRSS"), "hwm_kb": after.get("VmHWM"), "bpf": bpf,
    }


def _with_agent(port: int, rates: list, seconds: float, side: str, config: str) -> list[dict[str, Any]]:
    say(f"  starting the agent ({side}: {config.strip().replace(chr(10), ';')})")
    agent: AgentProcess = agent_proc.start_agent(config)
    out = []
    try:
        idle0 = agent.snapshot()
        time.sleep(IDLE_S)  # a measurement window, not a wait for readiness
        idle1 = agent.snapshot()
        idle_cores = (idle1["cpu_s"] - idle0["cpu_s"]) / (idle1["t"] - idle0["t"])
        say(f"  agent up in {agent.started_s:.1f}s, RSS {idle1.get('VmRSS', 0) / 1024:.0f} MB, idle {idle_cores:.3f} cores")
        for rate in rates:
            before = agent.drained()
            res = load(port, rate, seconds)
            after = agent.drained()
            res["agent"] = agent_cost(before, after, res["made"], seconds)
            res["agent"]["startup_s"] = agent.started_s
            res["agent"]["idle_cores"] = idle_cores
            res["agent"]["idle_rss_kb"] = idle1.get("VmRSS")
            say(f"  {side:<13} {rate!s:>10}: {res['conn_per_s']:8.0f} conn/s p99 {res['p99_s'] * 1e3:6.2f} ms, "
                f"agent {res['agent']['cores']:.2f} cores, lost {res['agent']['records_lost']}")
            out.append({"rate": rate, **res})
    finally:
        agent.stop()
    return out


def _with_peer(port: int, rates: list, seconds: float) -> list[dict[str, Any]]:
    """tcplife-bpfcc on the same load: a fresh process per rate, so each window's lines are its own."""
    out = []
    for rate in rates:
        tool = peer.start_peer()
        try:
            before = tool.caught_up()  # its start-up compile is over
            res = load(port, rate, seconds)
            after = tool.caught_up()
        finally:
            text, err = tool.stop()
        lines = peer.count_lines(text, port)
        res["agent"] = peer.peer_cost(before, after, res["made"], seconds, lines, peer.reported_lost(err))
        res["agent"]["startup_s"] = tool.started_s
        say(f"  {PEER:<13} {rate!s:>10}: {res['conn_per_s']:8.0f} conn/s p99 {res['p99_s'] * 1e3:6.2f} ms, "
            f"tcplife {res['agent']['cores']:.2f} cores, {lines} lines for {res['made']} connections, "
            f"lost {res['agent']['records_lost']} (BCC reported {res['agent']['lost_reported']})")
        out.append({"rate": rate, **res})
    return out


def _without_agent(port: int, rates: list, seconds: float) -> list[dict[str, Any]]:
    out = []
    for rate in rates:
        res = load(port, rate, seconds)
        say(f"  without agent {rate!s:>10}: {res['conn_per_s']:8.0f} conn/s p99 {res['p99_s'] * 1e3:6.2f} ms")
        out.append({"rate": rate, **res})
    return out


def run(pairs: int, seconds: float, rates: list, probes: list[str] | None = None,
        only: list[str] | None = None) -> dict[str, Any]:
    """Rotate `pairs` rounds of every side (or those in `only`; "without" always runs) over `rates`;
    raw runs and per-rate summaries."""
    configs = sides(probes)
    if only:
        unknown = [s for s in only if s not in configs]
        if unknown:
            raise BenchError(f"unknown storm side(s) {', '.join(unknown)}; known: {', '.join(configs)}")
        configs = {k: v for k, v in configs.items() if k == "without" or k in only}
    ensure_tools("nginx", "ab")
    raw: list[dict[str, Any]] = []
    with running_nginx() as port:
        for k in range(pairs):
            names = list(configs)
            order = names[k % len(names):] + names[: k % len(names)]  # rotate: each side leads in turn
            say(f"storm round {k + 1}/{pairs} ({', '.join(order)}; {seconds:g}s per run)")
            for side in order:
                cfg = configs[side]
                if side == PEER:
                    runs = _with_peer(port, rates, seconds)
                elif cfg:
                    runs = _with_agent(port, rates, seconds, side, cfg)
                else:
                    runs = _without_agent(port, rates, seconds)
                raw += [{"round": k, "side": side, **r} for r in runs]
    return {"params": {"rounds": pairs, "seconds_per_run": seconds, "rates": rates, "ab_concurrency": AB_CONCURRENCY,
                       "paced_workers": PACED_WORKERS, "sides": configs},
            "summary": summarise(raw, pairs, rates), "runs": raw}


def summarise(raw: list[dict[str, Any]], rounds: int, rates: list) -> dict[str, Any]:
    """Per agent side and rate: ratios to the same round's run without the agent, agent costs;
    medians and min-max over rounds."""
    out: dict[str, Any] = {}
    for side in sorted({r["side"] for r in raw if r["side"] != "without"}, key=list(sides()).index):
        for rate in rates:
            cols: dict[str, list[Any]] = {}
            bpf: dict[str, list[float]] = {}
            for k in range(rounds):
                w = next(r for r in raw if r["round"] == k and r["rate"] == rate and r["side"] == side)
                wo = next(r for r in raw if r["round"] == k and r["rate"] == rate and r["side"] == "without")
                a = w["agent"]
                row = {
                    "conn_per_s_ratio": w["conn_per_s"] / wo["conn_per_s"],
                    "p99_ratio": w["p99_s"] / wo["p99_s"] if wo["p99_s"] else None,
                    "conn_per_s_without": wo["conn_per_s"], "conn_per_s_with": w["conn_per_s"],
                    "agent_cpu_s_per_10k_conn": a["cpu_s_per_10k_conn"], "agent_cores": a["cores"],
                    "records_emitted": a["records_emitted"], "records_lost": a["records_lost"],
                    "spans_sampled_out": a["spans_sampled_out"],
                    "agent_idle_cores": a.get("idle_cores"), "spans_withheld": a.get("spans_withheld"),
                    "agent_rss_mb_steady": a["rss_kb"] / 1024, "agent_rss_mb_peak": a["hwm_kb"] / 1024,
                    "connections_made": w["made"], "kernel_counted_passive": a.get("kernel_counted_passive"),
                }
                for key, v in row.items():
                    cols.setdefault(key, []).append(v)
                for p, v in a["bpf"].items():
                    if v["ns_per_run"] is not None:
                        bpf.setdefault(p, []).append(v["ns_per_run"])
            out[f"{side}/{rate}"] = {**{k: summary(v) for k, v in cols.items()},
                                     "bpf_ns_per_run": {p: summary(v) for p, v in sorted(bpf.items())}}
    return out
