"""`python -m bench.report [--write] [DAY]`: the markdown tables of bench/README.md from
bench/results/*.json (the newest file of each benchmark, or those of DAY=YYYY-MM-DD), so figures
are never typed by hand. --write replaces the block between the markers in bench/README.md (every table) and README.md
(the targets table)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR


def _latest(name: str, day: str | None) -> dict[str, Any] | None:
    docs = [json.loads(f.read_text()) for f in RESULTS_DIR.glob(f"{day or '*'}-{name}*.json")]
    docs = [d for d in docs if d.get("benchmark", "").removesuffix("-quick") == name]
    return max(docs, key=lambda d: d["utc"]) if docs else None


def _mm(s: dict[str, Any] | None, fmt: str = "{:.2f}", scale: float = 1.0) -> str:
    if not s or s.get("median") is None:
        return "n/a"
    f = lambda v: fmt.format(v * scale)  # noqa: E731
    return f"{f(s['median'])} ({f(s['min'])}-{f(s['max'])})"


def storm_table(d: dict[str, Any]) -> list[str]:
    rates = [str(r) for r in d["params"]["rates"]]
    out = ["| side / rate | conn/s without | conn/s ratio with/without | p99 ratio | agent CPU s / 10k conn | agent cores "
           "| records lost / emitted | spans sampled out | spans withheld (budget) | RSS steady MB |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in d["summary"].items():
        side, rate = key.split("/", 1)
        if rate not in rates:
            continue
        out.append(
            f"| {side} / {rate} | {_mm(s['conn_per_s_without'], '{:.0f}')} | {_mm(s['conn_per_s_ratio'])} | {_mm(s['p99_ratio'])} | "
            f"{_mm(s['agent_cpu_s_per_10k_conn'])} | {_mm(s['agent_cores'])} | {_mm(s['records_lost'], '{:.0f}')} / "
            f"{_mm(s['records_emitted'], '{:.0f}')} | {_mm(s['spans_sampled_out'], '{:.0f}')} | {_mm(s.get('spans_withheld'), '{:.0f}')} | "
            f"{_mm(s['agent_rss_mb_steady'], '{:.0f}')} |")
    if any(k.startswith("peer/") for k in d["summary"]):
        out += ["", "`peer` is BCC's own `tcplife-bpfcc` (bench/peer.py): its CPU, RSS, and as records the connection ends it "
                "printed (lost = ends not printed); `with` is the agent as shipped (span budget on), `all_spans` the agent "
                "with `span_budget_per_second: 0` (every connection a span)."]
    return out


def kernel_table(storm: dict[str, Any] | None, rec: dict[str, Any] | None) -> list[str]:
    out = ["| probe / program | runs | ns per run |", "|---|---|---|"]
    if storm:
        sat = storm["summary"].get("with/saturation", {})
        for p, s in sat.get("bpf_ns_per_run", {}).items():
            out.append(f"| {p} (all programs, storm at saturation, median of rounds) | | {_mm(s, '{:.0f}')} |")
    if rec:
        for name, v in rec["recording"]["kernel_per_program"].items():
            if v["runs"]:
                out.append(f"| {name} (per-record recording) | {v['runs']} | {v['ns_per_run']:.0f} |")
    return out


def record_table(d: dict[str, Any]) -> list[str]:
    out = ["| pass | p50 us | p90 us | p99 us | all-in CPU us / record |", "|---|---|---|---|---|"]
    for name, r in d["replay"].items():
        allin = r.get("all_in_cpu_us_per_record")
        out.append(f"| {name} | {r['us']['p50']:.1f} | {r['us']['p90']:.1f} | {r['us']['p99']:.1f} | "
                   f"{'' if allin is None else f'{allin:.1f}'} |")
    return out


def governor_table(d: dict[str, Any]) -> list[str]:
    out = ["| series | report s | analyze s | report / analyze | report peak RSS MB | analyze peak RSS MB |", "|---|---|---|---|---|---|"]
    for s in d["sizes"]:
        out.append(f"| {s['live_series']} | {_mm(s['report_s'])} | {_mm(s['analyze_s'])} | {_mm(s['report_over_analyze'], '{:.1f}')} | "
                   f"{_mm(s['report_peak_rss_mb'], '{:.0f}')} | {_mm(s['analyze_peak_rss_mb'], '{:.0f}')} |")
    return out


def governor_scale_table(d: dict[str, Any]) -> list[str]:
    """Two-phase reports at scale, per backend and size (bench/governor_scale_bench.py)."""
    out = ["| backend | series | report s | phase 1 s | phase 2 s | enumerated (exact) | counted (exact, PromQL) | estimated | "
           "analyze s | report / analyze | report peak RSS MB | backend RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for s in d["sizes"]:
        if "error" in s:
            notes.append(f"{s['backend']} {s['series']}: not measured: {s['error']}")
            continue
        rep = [r for r in s["runs"] if r["command"] == "report"]
        ph = [r["phases"] for r in rep if r.get("phases")]
        p1 = _summary([p["statistics_seconds"] for p in ph])
        p2 = _summary([p["enumeration_seconds"] for p in ph])
        last = ph[-1] if ph else {}
        out.append(f"| {s['backend']} | {s['live_series']} | {_mm(s['report_s'])} | {_mm(p1)} | {_mm(p2)} | "
                   f"{last.get('enumerated_series', 'n/a')} series of {last.get('enumerated_metrics', 'n/a')} metrics | "
                   f"{last.get('counted_series', 0)} series of {last.get('counted_metrics', 0)} metrics | "
                   f"{last.get('estimated_series', 'n/a')} series of {last.get('estimated_metrics', 'n/a')} metrics | "
                   f"{_mm(s.get('analyze_s'))} | {_mm(s.get('report_over_analyze'), '{:.2f}')} | {_mm(s['report_peak_rss_mb'], '{:.0f}')} | "
                   f"{s.get('server_rss_mb', 0):.0f} |")
        if rep:
            exact = rep[-1].get("exact_metrics", [])
            notes.append(f"{s['backend']} {s['live_series']}: exact (enumerated, or counted in PromQL) among the top metrics: {', '.join(exact) or 'none'}; "
                         f"statistics: {last.get('statistics')}")
    return out + [""] + [f"- {n}" for n in notes]


def _summary(values: list[float]) -> dict[str, Any] | None:
    return {"median": sorted(values)[len(values) // 2], "min": min(values), "max": max(values)} if values else None


def skips_table(d: dict[str, Any]) -> list[str]:
    out = ["| probes loaded as | state-change runs skipped | all runs skipped | closes missing (not counted) | "
           "skipped closes the repair finished | conns entries left behind | wakeup runs skipped | wakeups skipped minus marked |",
           "|---|---|---|---|---|---|---|---|"]
    for side, s in d["summary"].items():
        out.append(f"| {side} | {_mm(s['state_change_runs_skipped'], '{:.0f}')} | {_mm(s['all_runs_skipped'], '{:.0f}')} | "
                   f"{_mm(s['closes_missing'], '{:.0f}')} | {_mm(s['skipped_closes_finished'], '{:.0f}')} | {_mm(s['stale_conns_left'], '{:.0f}')} | "
                   f"{_mm(s.get('wakeup_runs_skipped'), '{:.0f}')} | {_mm(s.get('wakeups_lost'), '{:.0f}')} |")
    runs = d["runs"]
    out.append("")
    out.append("Per run (round order): " + "; ".join(
        f"{'repair' if r['repair'] else 'tp only'}: skipped {r['skipped_runs'].get('tcp_lifecycle/sock:inet_sock_set_state', 0)}"
        f"+{sum(r['skipped_runs'].values()) - r['skipped_runs'].get('tcp_lifecycle/sock:inet_sock_set_state', 0)}, "
        f"missing {r['closes_missing']}, left {r['stale_conns_left']}" for r in runs))
    return out


def evidence_table(d: dict[str, Any]) -> list[str]:
    out = [f"Input: {d['params']['input_mb']:.0f} MB of agent files ({d['params']['spans_mb']:.0f} MB spans, "
           f"{d['params']['logs_mb']:.0f} MB event lines), all in the window.", "",
           "| run | wall s | CPU s | peak RSS MB | bundle MB | timeline.md KB | postmortem.md KB |",
           "|---|---|---|---|---|---|---|"]
    for name, s in d["summary"].items():
        out.append(f"| {name} | {_mm(s['s'], '{:.1f}')} | {_mm(s.get('cpu_s'), '{:.1f}')} | {_mm(s['rss_mb'], '{:.0f}')} | "
                   f"{_mm(s['out_mb'], '{:.0f}')} | {_mm(s['timeline_kb'], '{:.1f}')} | {_mm(s['postmortem_kb'], '{:.1f}')} |")
    return out


def _med(s: dict[str, Any] | None) -> float | None:
    return None if not s else s.get("median")


def targets_table(storm: dict[str, Any] | None, rec: dict[str, Any] | None, gov: dict[str, Any] | None,
                  skips: dict[str, Any] | None = None, evidence: dict[str, Any] | None = None,
                  scale: dict[str, Any] | None = None) -> list[str]:
    """The issue's targets next to what was measured; 'met' is computed, never typed."""
    out = ["| target | measured | met |", "|---|---|---|"]
    yes = lambda ok: "n/a" if ok is None else ("yes" if ok else "**no**")  # noqa: E731
    if skips:
        rep, tp = skips["summary"]["with repair"], skips["summary"]["tracepoint only"]
        out.append(f"| nothing lost silently next to a neighbour BPF tracer (closes counted = made) | with the repair: "
                   f"{_mm(rep['closes_missing'], '{:.0f}')} missing, {_mm(rep['stale_conns_left'], '{:.0f}')} conns left, "
                   f"{_mm(rep['state_change_runs_skipped'], '{:.0f}')} state changes skipped; tracepoint only: "
                   f"{_mm(tp['closes_missing'], '{:.0f}')} missing, {_mm(tp['stale_conns_left'], '{:.0f}')} left | "
                   f"{yes(rep['closes_missing']['max'] == 0 and rep['stale_conns_left']['max'] == 0)} |")
    if storm:
        sm = storm["summary"]
        runs = [r for r in storm["runs"] if r["side"] == "with"]
        exact = all(r["agent"]["kernel_counted_passive"] >= r["made"] for r in runs)
        out.append("| metrics exact at any rate (counted = made) | exact in a test cgroup at 0.001-core budget "
                   "(tests/agent/test_overhead_ebpf.py); storm: kernel-counted passive closes >= connections made in "
                   f"{sum(r['agent']['kernel_counted_passive'] >= r['made'] for r in runs)}/{len(runs)} runs (other traffic adds, so = cannot "
                   f"be shown there) | {yes(exact)}{' (= in the test, >= under storm)' if exact else ''} |")
        for rate in storm["params"]["rates"]:
            if rate == "saturation":
                continue
            s = sm.get(f"with/{rate}", {})
            lost = s.get("records_lost")
            out.append(f"| 0 lost records at {rate} conn/s paced | lost {_mm(lost, '{:.0f}')} of {_mm(s.get('records_emitted'), '{:.0f}')}; "
                       f"achieved {_mm(s.get('conn_per_s_with'), '{:.0f}')} conn/s | {yes(lost and lost['max'] == 0)} |")
        sat = sm.get("with/saturation", {})
        r = _med(sat.get("conn_per_s_ratio"))
        dropped = bool(sat.get("records_lost") and sat["records_lost"]["median"])
        out.append(f"| saturation conn/s with >= 0.90 x without | {_mm(sat.get('conn_per_s_ratio'))}; the agent lost "
                   f"{_mm(sat.get('records_lost'), '{:.0f}')} of {_mm(sat.get('records_emitted'), '{:.0f}')} records | "
                   f"{yes(None if r is None else r >= 0.9)}{', by not keeping up' if dropped and r and r >= 0.9 else ''} |")
        peer_sat = sm.get("peer/saturation")
        if peer_sat:
            pr, wr = _med(peer_sat.get("conn_per_s_ratio")), r
            out.append(f"| conn/s with agent / without at saturation, shipped defaults, >= 0.95 and >= the peer (tcplife-bpfcc) | "
                       f"agent {_mm(sat.get('conn_per_s_ratio'))}, peer {_mm(peer_sat.get('conn_per_s_ratio'))} | "
                       f"{yes(None if wr is None or pr is None else wr >= 0.95 and wr >= pr)} |")
            alls = sm.get("all_spans/saturation", {})
            ac, pc = _med(alls.get("agent_cpu_s_per_10k_conn")), _med(peer_sat.get("agent_cpu_s_per_10k_conn"))
            out.append(f"| CPU s per 10k connections, every connection a span, <= the peer's (same run) | "
                       f"agent {_mm(alls.get('agent_cpu_s_per_10k_conn'))}, peer {_mm(peer_sat.get('agent_cpu_s_per_10k_conn'))}; "
                       f"shipped defaults {_mm(sat.get('agent_cpu_s_per_10k_conn'))} | {yes(None if ac is None or pc is None else ac <= pc)} |")
            rss150 = sat.get("agent_rss_mb_steady")
            peer_rss = _mm(peer_sat.get("agent_rss_mb_steady"), "{:.0f}")
            out.append(f"| agent RSS steady, all probes, <= 150 MB | {_mm(rss150, '{:.0f}')} MB (peer {peer_rss} MB) | "
                       f"{yes(None if not rss150 else rss150['max'] <= 150)} |")
        rss = sat.get("agent_rss_mb_steady")
        bcc = f"; BCC compile + load of every probe adds {rec['recording']['bcc_rss_mb']:.0f} MB" if rec else ""
        out.append(f"| agent RSS <= 250 MB steady | {_mm(rss, '{:.0f}')} MB steady, peak {_mm(sat.get('agent_rss_mb_peak'), '{:.0f}')} MB{bcc} | "
                   f"{yes(None if not rss else rss['max'] <= 250)} |")
    if rec:
        full = rec["replay"]["full"]
        out.append(f"| <= 10 us user space per record (p50), full pipeline | p50 {full['us']['p50']:.1f} us, all-in "
                   f"{full['all_in_cpu_us_per_record']:.0f} us CPU; shed path p50 {rec['replay']['shed']['us']['p50']:.1f} us | "
                   f"{yes(full['us']['p50'] <= 10)} |")
    if gov:
        for s in gov["sizes"]:
            ratio = _med(s["report_over_analyze"])
            rss = s["report_peak_rss_mb"]["max"]
            where = f"{s['live_series']} series" + ("; the target is at 1M" if s["live_series"] < 900_000 else "")
            out.append(f"| budget report no slower than tsdb analyze, <= 1 GiB ({where}) | "
                       f"report/analyze {_mm(s['report_over_analyze'], '{:.1f}')}x, report peak {rss:.0f} MB | "
                       f"{yes(ratio is not None and ratio <= 1 and rss <= 1024)} |")
    if scale:
        for s in scale["sizes"]:
            if "error" in s:
                out.append(f"| governor at scale, {s['backend']} {s['series']} series | not measured: {s['error'][:120]} | **no** |")
                continue
            rss = s["report_peak_rss_mb"]["max"]
            secs = s["report_s"]["max"]
            if s["backend"] == "prometheus":
                ratio = _med(s["report_over_analyze"])
                out.append(f"| two-phase report no slower than tsdb analyze on Prometheus, <= 1 GiB ({s['live_series']} series) | "
                           f"report/analyze {_mm(s['report_over_analyze'], '{:.2f}')}x, report peak {rss:.0f} MB | "
                           f"{yes(ratio is not None and ratio <= 1 and rss <= 1024)} |")
            else:
                out.append(f"| report on VictoriaMetrics <= 60 s and <= 1 GiB ({s['live_series']} series) | "
                           f"{_mm(s['report_s'], '{:.1f}')} s, peak {rss:.0f} MB | {yes(secs <= 60 and rss <= 1024)} |")
    if evidence:
        p = evidence["params"]
        for name, s in evidence["summary"].items():
            wall, rss = s["s"]["median"], s["rss_mb"]["max"]  # wall time swings with the shared machine's load
            out.append(f"| evidence export of a 1 GB window <= {p['target_s']:.0f} s and <= {p['target_rss_mb']:.0f} MB RSS "
                       f"({name}, {p['input_mb']:.0f} MB) | {_mm(s['s'], '{:.1f}')} s wall ({_mm(s.get('cpu_s'), '{:.1f}')} s CPU), "
                       f"peak {_mm(s['rss_mb'], '{:.0f}')} MB | {yes(wall <= p['target_s'] and rss <= p['target_rss_mb'])} |")
    return out


BEGIN, END = "<!-- bench.report:begin -->", "<!-- bench.report:end -->"


def render(day: str | None) -> str:
    storm, rec, gov = _latest("storm", day), _latest("per-record", day), _latest("governor", day)
    skips = _latest("skips", day)
    evidence = _latest("evidence", day)
    scale = _latest("governor-scale", day)
    parts = ["### Targets\n", "\n".join(targets_table(storm, rec, gov, skips, evidence, scale)) + "\n"]
    for title, doc, fn in (("Connection storm", storm, storm_table), ("Per-record cost", rec, record_table),
                           ("Governor", gov, governor_table), ("Governor at scale: two phases", scale, governor_scale_table),
                           ("Skipped runs next to a neighbour tracer", skips, skips_table),
                           ("Evidence export", evidence, evidence_table)):
        if doc:
            parts.append(f"### {title} ({doc['utc']}, commit {doc['commit']}, {'quick' if doc.get('quick') else 'default'} run)\n")
            parts.append("\n".join(fn(doc)) + "\n")
    parts.append("### Kernel cost per program run\n")
    parts.append("\n".join(kernel_table(storm, rec)) + "\n")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    write = "--write" in argv
    args = [a for a in argv if a != "--write"]
    text = render(args[0] if args else None)
    if not write:
        print(text)
        return 0
    day = args[0] if args else None
    targets = "\n".join(targets_table(_latest("storm", day), _latest("per-record", day), _latest("governor", day),
                                      _latest("skips", day), _latest("evidence", day), _latest("governor-scale", day))) + "\n"
    bench_readme = Path(__file__).with_name("README.md")
    # bench/README.md gets every table; the project README only the targets table.
    for readme, body in ((bench_readme, text), (bench_readme.parent.parent / "README.md", targets)):
        if not _replace_block(readme, body):
            print(f"bench.report: {readme} lacks the {BEGIN} ... {END} markers", file=sys.stderr)
            return 2
    return 0


def _replace_block(readme: Path, body: str) -> bool:
    doc = readme.read_text()
    if BEGIN not in doc or END not in doc:
        return False
    head, rest = doc.split(BEGIN, 1)
    readme.write_text(head + BEGIN + "\n" + body + END + rest.split(END, 1)[1])
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
