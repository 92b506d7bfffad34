"""Keys the C and the Python must agree on, from one source or checked here by reading both.

- tcp_lifecycle's codes (directions, outcomes, owner sources, record flags, slot counts) are
  Python's only: the C gets them as -D defines and refuses to compile without them;
- the histogram slot count reaches bcgov_hist.h the same way, from each spec;
- the slot function: bcgov_hist.h's `bcgov_hist_slot`, compiled here with the host C compiler
  (with BCC's own bpf_log2l, read out of libbcc), against probes/latency_hist.py `hist_slot`;
- stats indexes (enum bcgov_stat) and the other probes' codes: read from the C and compared.
"""

from __future__ import annotations

import ctypes.util
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from probes import block_io, families, process, registry, tcp_lifecycle, tcp_reset
from probes.latency_hist import HIST_SLOTS, hist_slot

PROBES = Path(__file__).resolve().parents[2] / "probes"
_DEFINE = re.compile(r"^\s*#define\s+(\w+)\s+(-?\d+)\b", re.M)


def c_defines(name: str) -> dict[str, int]:
    """Integer `#define NAME value` lines of a probe source or header."""
    return {k: int(v) for k, v in _DEFINE.findall((PROBES / name).read_text())}


def spec_defines(spec_name: str) -> dict[str, int]:
    return {k: int(v) for k, _, v in (d.partition("=") for d in registry.get(spec_name).defines) if v}


# ---- generated: the C has no copy -------------------------------------------------------------


def test_tcp_lifecycle_codes_come_only_from_python() -> None:
    passed = spec_defines("tcp_lifecycle")
    assert passed["DIR_ACTIVE"] == 1 and {passed["DIR_ACTIVE"]: "active", passed["DIR_PASSIVE"]: "passive"} == tcp_lifecycle.DIRECTIONS
    assert {passed[f"OUTCOME_{v.upper()}"]: v for v in tcp_lifecycle.OUTCOMES.values()} == tcp_lifecycle.OUTCOMES
    assert passed["BCGOV_HIST_SLOTS"] == tcp_lifecycle.DURATION_SLOTS and passed["RTX_SLOTS"] == tcp_lifecycle.RTX_SLOTS
    source = (PROBES / "tcp_lifecycle.bpf.c").read_text()
    typed = set(c_defines("tcp_lifecycle.bpf.c")) & set(passed)
    assert not typed, f"tcp_lifecycle.bpf.c defines {sorted(typed)} itself: they come from probes/tcp_lifecycle.py"
    guard = source[source.index("#if !defined(BCGOV_HIST_SLOTS)"):source.index("#error")]
    assert set(re.findall(r"defined\((\w+)\)", guard)) == set(passed), "the #error guard must name every passed code"


def test_every_histogram_probe_passes_its_slot_count() -> None:
    for spec in registry.ALL:
        hists = [d for d in spec.metrics if isinstance(d, families.HistogramFamily)]
        if "bcgov_hist.h" not in spec.source_path.read_text():
            assert not hists, spec.name
            continue
        (fam,) = hists
        assert spec_defines(spec.name)["BCGOV_HIST_SLOTS"] == fam.slots, spec.name
    assert "#define BCGOV_HIST_SLOTS" not in (PROBES / "bcgov_hist.h").read_text()


# ---- checked: both sides read -----------------------------------------------------------------


def test_stat_indexes_match_enum_bcgov_stat() -> None:
    text = (PROBES / "bcgov_common.h").read_text()
    enum = dict(re.findall(r"BCGOV_STAT_(\w+)\s*=\s*(\d+)", text))
    assert {k: int(v) for k, v in enum.items()} == {
        "EMITTED": families.STAT_EMITTED, "LOST": families.STAT_LOST, "MAP_FULL": families.STAT_MAP_FULL,
        "UNTRACKED": families.STAT_UNTRACKED, "MAX": families.STAT_MAX,
    }
    for spec in registry.ALL:
        for d in spec.metrics:
            if isinstance(d, families.StatCounter):
                assert 0 <= d.index < families.STAT_MAX


def test_the_other_probes_codes_match_their_c() -> None:
    reset = c_defines("tcp_reset.bpf.c")
    assert {reset["DIR_SENT"]: "sent", reset["DIR_RECEIVED"]: "received"} == tcp_reset.DIRECTIONS
    assert (reset["ADDR_TUPLE"], reset["ADDR_SOCKADDR"]) == (tcp_reset.ADDR_TUPLE, tcp_reset.ADDR_SOCKADDR)
    blk = c_defines("block_io.bpf.c")
    assert {blk[f"OP_{v.upper()}"]: v for v in block_io.OPS.values()} == block_io.OPS
    proc = c_defines("process.bpf.c")
    assert {proc["EXIT_UNKNOWN"]: "unknown", proc["EXIT_CODE"]: "exited", proc["EXIT_SIGNAL"]: "signaled"} == process.EXIT_KINDS
    assert (proc["KIND_EXEC"], proc["KIND_EXIT"]) == (process.KIND_EXEC, process.KIND_EXIT)
    assert (proc["ARG_LEN"], proc["FILENAME_LEN"]) == (process.ARG_LEN, process.FILENAME_LEN)


# ---- the slot function, compiled ----------------------------------------------------------------

_HARNESS = r"""
#include <stdio.h>
typedef unsigned long long u64;
typedef unsigned int u32;
#define __always_inline inline __attribute__((always_inline))
#define lock_xadd(p, v) ((void)__sync_fetch_and_add((p), (v)))
%(log2)s
#include "bcgov_hist.h"
int main(void)
{
    u64 v;
    while (scanf("%%llu", &v) == 1)
        printf("%%u\n", bcgov_hist_slot(v));
    return 0;
}
"""

# BCC's helpers.h as of 0.26, used only when libbcc is not installed to read it from.
_BCC_LOG2 = r"""
static inline __attribute__((always_inline)) unsigned int bpf_log2(unsigned int v)
{
  unsigned int r;
  unsigned int shift;

  r = (v > 0xFFFF) << 4; v >>= r;
  shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
  shift = (v > 0xF) << 2; v >>= shift; r |= shift;
  shift = (v > 0x3) << 1; v >>= shift; r |= shift;
  r |= (v >> 1);
  return r;
}
static inline __attribute__((always_inline)) unsigned int bpf_log2l(unsigned long v)
{
  unsigned int hi = v >> 32;
  if (hi)
    return bpf_log2(hi) + 32 + 1;
  else
    return bpf_log2(v) + 1;
}
"""


def bcc_log2() -> str:
    """bpf_log2 and bpf_log2l as BCC compiles them into every probe: the text of helpers.h that
    libbcc carries, else the copy above."""
    name = ctypes.util.find_library("bcc")
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"):
        if name and (Path(d) / name).exists():
            blob = (Path(d) / name).read_bytes()
            start = blob.find(b"unsigned int bpf_log2(unsigned int v)")
            end = blob.find(b"struct bpf_context;", start)
            if start > 0 and end > start:
                head = blob.rfind(b"static inline", 0, start)
                return blob[head:end].decode()
    return _BCC_LOG2


def _values() -> list[int]:
    edges = [0, 1, 999, 1000, 1001, 1999, 2000, 2**64 - 1, 2**63, 2**32 * 1000]
    for bit in range(64):
        for us in ((1 << bit) - 1, 1 << bit, (1 << bit) + 1):
            for ns in (us * 1000 - 1, us * 1000, us * 1000 + 999):
                if 0 <= ns < 2**64:
                    edges.append(ns)
    rng = random.Random(17)
    return edges + [rng.getrandbits(rng.randrange(1, 65)) for _ in range(5000)]


@pytest.mark.parametrize("slots", [HIST_SLOTS, tcp_lifecycle.DURATION_SLOTS])
def test_the_c_slot_function_is_hist_slot(tmp_path: Path, slots: int) -> None:
    cc = shutil.which("cc")
    if cc is None:
        pytest.fail("no host C compiler (cc) to build bcgov_hist.h's slot function with")
    src = tmp_path / "slot.c"
    src.write_text(_HARNESS % {"log2": bcc_log2()})
    exe = tmp_path / "slot"
    subprocess.run([cc, "-O2", f"-I{PROBES}", f"-DBCGOV_HIST_SLOTS={slots}", "-o", str(exe), str(src)], check=True)
    values = _values()
    out = subprocess.run([str(exe)], input="\n".join(map(str, values)), capture_output=True, text=True, check=True).stdout
    got = [int(x) for x in out.split()]
    want = [hist_slot(v, slots) for v in values]
    assert len(got) == len(values)
    diff = [(v, g, w) for v, g, w in zip(values, got, want, strict=True) if g != w]
    assert not diff, f"C and Python slots differ (value, C, Python): {diff[:5]}"


def test_the_header_refuses_to_compile_without_a_slot_count(tmp_path: Path) -> None:
    cc = shutil.which("cc")
    if cc is None:
        pytest.fail("no host C compiler (cc)")
    src = tmp_path / "slot.c"
    src.write_text(_HARNESS % {"log2": bcc_log2()})
    r = subprocess.run([cc, f"-I{PROBES}", "-fsyntax-only", str(src)], capture_output=True, text=True)
    assert r.returncode != 0 and "hist_defines" in r.stderr


def test_every_probe_has_the_stats_array_the_agent_reads() -> None:
    """bcgov_agent_map_full_total (and _events_lost for ring buffer probes) read `stats` of every
    loaded probe, by the indexes above."""
    for spec in registry.ALL:
        assert "BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);" in spec.source_path.read_text(), spec.name
