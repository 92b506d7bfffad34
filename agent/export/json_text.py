"""Compact JSON text from cached fragments, for the hot paths that write JSON per record (the
event log's lines, the JSONL span exporter's OTLP requests).

Records repeat the same keys and mostly the same string values (addresses, names, identity), so
their JSON texts are memoised: a line is then mostly cache hits and one join, several times
cheaper than building dicts and dumping them while the readers compete for the GIL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

# The str encoder json.dumps itself uses (ensure_ascii), so cached text equals json.dumps output.
json_str: Callable[[str], str] = json.encoder.encode_basestring_ascii

# Bounded (LRU, in C): a node with many distinct peers must not grow the agent without end.
FRAGMENT_CACHE_MAX = 16384

F = TypeVar("F", bound=Callable[..., str])


def cached_fragment(render: F) -> F:
    """Memoise a fragment renderer with a bounded LRU."""
    return functools.lru_cache(maxsize=FRAGMENT_CACHE_MAX)(render)  # type: ignore[return-value]


def finite_float(v: Any) -> bool:
    """True for a finite float, which json writes as float.__repr__ (json's encode() per value
    costs ~3 us; NaN and infinities need json's own spelling)."""
    return type(v) is float and v - v == 0
