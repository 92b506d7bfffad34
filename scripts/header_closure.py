"""Print the headers a kernel header tree must keep for BCC to compile tracepoint-only probes.

    python3 scripts/header_closure.py TREE

The roots are what BCC itself puts in front of every program (`-include linux/kconfig.h` and the
`#include`s of its built-in helpers.h/bpf_workaround.h/proto.h, read from libbcc 0.26's strings);
bcgov's probes include only their own headers (probes/*.h), which include nothing from the kernel.
From the roots, every `#include`/`#include_next` is followed through BCC's include path, taking
every candidate and ignoring `#if` (an over-approximation: what some configuration might include
is kept). Used by scripts/bundle_kernel_headers.sh; tests/agent/test_no_node_headers_ebpf.py
compiles every probe against the result.
"""

from __future__ import annotations

import os
import re
import sys

ROOTS = (
    "linux/kconfig.h", "uapi/linux/ptrace.h", "uapi/linux/if_packet.h", "uapi/linux/if_ether.h",
    "uapi/linux/bpf.h", "linux/version.h", "linux/types.h", "linux/log2.h", "linux/bpf_common.h", "asm/page.h",
)
# BCC's kbuild include path for x86, in its order (src/cc/frontends/clang/kbuild_helper.cc).
INCLUDE_PATH = (
    "arch/x86/include", "arch/x86/include/generated", "include", "arch/x86/include/uapi",
    "arch/x86/include/generated/uapi", "include/uapi", "include/generated/uapi",
)
_INCLUDE = re.compile(r'^\s*#\s*include(?:_next)?\s*([<"])([^>"]+)[>"]', re.M)


def candidates(tree: str, name: str, quote: str, including: str) -> list[str]:
    """Every file `#include <name>` (or "name", from `including`) could open, relative to tree."""
    dirs = ([os.path.dirname(including)] if quote == '"' else []) + list(INCLUDE_PATH)
    found = (os.path.normpath(os.path.join(d, name)) for d in dirs)
    return [f for f in found if os.path.isfile(os.path.join(tree, f))]


def closure(tree: str, roots: tuple[str, ...] = ROOTS) -> set[str]:
    """The roots and everything they may include, as paths relative to `tree`."""
    todo = [f for r in roots for f in candidates(tree, r, "<", "")]
    seen: set[str] = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        with open(os.path.join(tree, f), encoding="utf-8", errors="replace") as fh:
            for quote, name in _INCLUDE.findall(fh.read()):
                todo += candidates(tree, name, quote, f)
    return seen


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print("usage: header_closure.py TREE (a merged kernel header tree)", file=sys.stderr)
        return 2
    keep = closure(argv[0])
    if "include/linux/kconfig.h" not in keep:
        print(f"header_closure: {argv[0]} has no include/linux/kconfig.h: not a merged header tree", file=sys.stderr)
        return 2
    print("\n".join(sorted(keep)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
