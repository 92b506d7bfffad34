"""Reading BPF maps at scrape time: draining a hash (read and delete what was read) so the kernel
map holds only what changed since the last scrape and never fills with keys of long-gone pods."""

from __future__ import annotations

from typing import Any

from probes.families import key_int


def drain_entries(table: Any) -> list[tuple[Any, Any]]:
    """Read and delete every (key, value) of a BPF hash, atomically per batch where the kernel can."""
    try:
        return list(table.items_lookup_and_delete_batch())
    except Exception:  # pre-5.6 kernels lack batch ops: read, then delete what was read
        out = []
        for k, v in list(table.items()):
            out.append((k, v))
            try:
                del table[k]
            except KeyError:
                pass
        return out


def drain(table: Any) -> list[tuple[Any, int]]:
    """`drain_entries` of a counter map: values as ints, keys as the table's own key type."""
    # batch ops hand scalar keys back as ints: make every key the table's own key type
    return [(table.Key(k) if isinstance(k, int) else k, key_int(v)) for k, v in drain_entries(table)]


def per_cpu_sum(table: Any, index: int) -> int:
    """Sum over CPUs of slot `index` of a per-CPU array."""
    return int(sum(table[index]))
