"""`python -m bench [--only NAME ...] [--quick] ...`: run the benchmarks, write bench/results/*.json.

Default (all of them, about 15 minutes on a 2-core machine): storm with 5 rounds (without the agent, BCC's
tcplife-bpfcc as the peer, the agent as shipped, with every connection a span, under a 0.25-core CPU
budget) of 5 s runs at saturation, 2k, 5k and 10k conn/s; per-record replay of 20k records; governor at
100k series; evidence export over a 1 GB window of agent files (--evidence-mb). --quick: 2 rounds of 3 s and
10k records, one evidence round.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from bench.common import BenchError, say, write_result

NAMES = ("storm", "per-record", "governor", "governor-scale", "skips", "evidence")


def _storm(a: argparse.Namespace) -> dict[str, Any]:
    from bench import storm

    rates: list = [storm.SATURATION, *a.rates]
    return storm.run(a.pairs, a.seconds, rates, a.agent_probes.split(",") if a.agent_probes else None,
                     a.storm_sides.split(",") if a.storm_sides else None)


def _per_record(a: argparse.Namespace) -> dict[str, Any]:
    from bench import per_record

    return per_record.run(a.records, a.baseline)


def _governor(a: argparse.Namespace) -> dict[str, Any]:
    from bench import governor_bench

    return governor_bench.run(a.series)


def _governor_scale(a: argparse.Namespace) -> dict[str, Any]:
    from bench import governor_scale_bench

    vm = [n for n in a.scale_vm if n > 0] if a.scale_vm is not None else [1_000_000]
    return governor_scale_bench.run(a.scale_prometheus or [1_000_000], vm,
                                    a.scale_repeats, a.scale_shape, not a.scale_no_analyze_ref)


def _skips(a: argparse.Namespace) -> dict[str, Any]:
    from bench import skipped_runs

    return skipped_runs.run(a.skip_rounds, a.skip_connections, 23)


def _evidence(a: argparse.Namespace) -> dict[str, Any]:
    from bench import evidence_bench

    return evidence_bench.run(a.evidence_mb, 1 if a.quick else evidence_bench.REPEATS)


RUNNERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "storm": _storm, "per-record": _per_record, "governor": _governor, "governor-scale": _governor_scale, "skips": _skips, "evidence": _evidence,
}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=NAMES, help="run only this benchmark (repeatable)")
    p.add_argument("--quick", action="store_true", help="fewer pairs, shorter runs, fewer records")
    p.add_argument("--rounds", "--pairs", dest="pairs", type=int,
                   help="storm: rounds of without / with / with-budget runs, order rotated (default 5, quick 2)")
    p.add_argument("--seconds", type=float, help="storm: seconds per run (default 5, quick 3)")
    p.add_argument("--rates", type=int, nargs="*", default=[2000, 5000, 10000], help="storm: paced conn/s levels")
    p.add_argument("--agent-probes", help="storm: comma-separated probes for the agent (default: all)")
    p.add_argument("--storm-sides", help="storm: comma-separated sides besides 'without' (default: peer,with,all_spans,budget)")
    p.add_argument("--records", type=int, help="per-record: connections to record (default 20000, quick 10000)")
    p.add_argument("--baseline", help="per-record: also replay the same records with this commit's code (side by side)")
    p.add_argument("--skip-rounds", type=int, default=None,
                   help="skips: rounds of (tracepoint only, with repair) under a neighbour tracer (default 5, quick 2)")
    p.add_argument("--skip-connections", type=int, default=2003, help="skips: normal connections per run (default 2003)")
    p.add_argument("--series", type=int, action="append",
                   help="governor: TSDB sizes (repeatable; default 100000; 1000000 takes minutes and GBs)")
    p.add_argument("--scale-prometheus", type=int, action="append", help="governor-scale: Prometheus sizes (default 1000000)")
    p.add_argument("--scale-vm", type=int, action="append", help="governor-scale: VictoriaMetrics sizes (default 1000000; 0 for none)")
    p.add_argument("--scale-repeats", type=int, default=3, help="governor-scale: alternating report/analyze rounds (default 3)")
    p.add_argument("--scale-shape", choices=["platform", "uniform"], default="platform",
                   help="governor-scale: the population (see bench/governor_scale_bench.py)")
    p.add_argument("--scale-no-analyze-ref", action="store_true", help="governor-scale: no promtool reference on VictoriaMetrics sizes")
    p.add_argument("--evidence-mb", type=int, default=1024, help="evidence: MB of agent files in the window (default 1024)")
    a = p.parse_args(argv)
    a.pairs = a.pairs or (2 if a.quick else 5)
    a.seconds = a.seconds or (3.0 if a.quick else 5.0)
    a.records = a.records or (10000 if a.quick else 20000)
    a.series = a.series or [100_000]
    a.skip_rounds = a.skip_rounds or (2 if a.quick else 5)
    if a.pairs < 1 or a.seconds <= 0 or a.records < 1 or any(n < 1000 for n in a.series):
        p.error("--rounds, --seconds and --records must be positive, --series at least 1000")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("bench: must run as root (BPF, nginx, apt): run 'sudo make bench'", file=sys.stderr)
        return 2
    failed = 0
    for name in a.only or NAMES:
        say(f"== {name}")
        try:
            data = RUNNERS[name](a)
        except BenchError as exc:
            print(f"bench: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        data["quick"] = a.quick
        say(f"wrote {write_result(name + ('-quick' if a.quick else ''), data)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
