"""A probe's declared maps checked against its compiled program when it loads.

A probe's spec declares which BPF map feeds which metric family and which key fields each label
reads (`ProbeSpec.metrics`, probes/families.py); the C declares the maps. If the two disagree (a
map the C does not have, a key field its key struct lacks, a histogram declared over a map of
counts, no `stats` array), scraping would fail on every scrape. Checked here instead, once, from
BCC's view of the compiled maps (`bpf[name]`, its ctypes `Key` and `Leaf`): the probe is refused
with one line naming the family, the map or field, and the fix, and the other probes run.

Nothing here decodes a label (that is agent/metrics/labels.py, bound to identity at scrape): a
decoder's `fields` are compared with the key type's `_fields_`, and a decoder that reads the key
through a function (`address`, `value`) is called once on a zeroed key, where a field the key
struct lacks raises AttributeError.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from probes import families as f
from probes.spec import ProbeSpec

#: ctypes type codes of the integers a counter map's value may be (u64 in every probe today).
_INTEGER_CODES = frozenset("bBhHiIlLqQ")


class DeclarationMismatch(Exception):
    """A declaration the compiled program does not match; the message is one line naming the fix."""


def check(spec: ProbeSpec, bpf: Any) -> None:
    """Check `spec`'s declared families against `bpf` (a loaded bcc.BPF, or anything indexable by
    map name giving tables with BCC's `Key`, `Leaf` and `max_entries`). Raises DeclarationMismatch
    at the first disagreement."""
    source = spec.source_path.name
    for name in spec.layouts:
        _table(bpf, name, f"spec layout {name} names a map {source} does not declare; the C declares one map per "
                          f"record struct only for its type (e.g. BPF_ARRAY({name}, struct <record>, 1)) so the "
                          "loader can check the ctypes mirror against it: declare it, or fix the name in layouts")
    if spec.ring_buffer:
        _table(bpf, spec.ring_buffer, f"spec ring_buffer {spec.ring_buffer} names a map {source} does not declare; "
                                      f"declare BPF_RINGBUF_OUTPUT({spec.ring_buffer}, <pages>) in the C or fix the name")
    stats = _table(bpf, "stats", f"no `stats` array in {source}; every probe declares BPF_PERCPU_ARRAY(stats, u64, "
                   "BCGOV_STAT_MAX) (probes/bcgov_common.h): the agent reads its lost and map-full counts there")
    for d in spec.metrics:
        if isinstance(d, f.StatCounter):
            _check_index(d.name, "stats", stats, d.index)
            continue
        table = _table(bpf, d.table, f"{_what(d)} {d.name} reads map {d.table}, which {source} does not declare; "
                                     f"name the map the C declares in the spec, or declare {d.table} in the C")
        if isinstance(d, (f.CounterFamily, f.HistogramFamily)):
            _check_value(d, table)
            for label in d.labels:
                _check_label(d, label, table)
        elif isinstance(d, f.IndexedCounter):
            for index in d.values:
                _check_index(d.name, d.table, table, index)


def _what(d: f.Declaration) -> str:
    return "port owners" if isinstance(d, f.PortOwners) else "family"


def _table(bpf: Any, name: str, problem: str) -> Any:
    try:
        return bpf[name]
    except KeyError:  # BCC's answer for a map the program does not have
        raise DeclarationMismatch(problem) from None


def _check_index(family: str, name: str, table: Any, index: int) -> None:
    size = getattr(table, "max_entries", None)
    if size is not None and not 0 <= index < size:
        raise DeclarationMismatch(f"family {family} reads index {index} of array {name}, which has {size} entries; "
                                  f"make the array larger in the C or drop the index from the declaration")


def _check_value(d: f.CounterFamily | f.HistogramFamily, table: Any) -> None:
    leaf = table.Leaf
    fields = dict(getattr(leaf, "_fields_", ()))
    if isinstance(d, f.CounterFamily):
        if getattr(leaf, "_type_", None) not in _INTEGER_CODES:
            raise DeclarationMismatch(
                f"family {d.name} is a CounterFamily (a map of u64 counts) but map {d.table}'s value is "
                f"{_type_name(leaf)}; declare the map's value u64, or the family a HistogramFamily for struct bcgov_hist")
        return
    slots = fields.get("slots")
    if slots is None or "sum_ns" not in fields:
        raise DeclarationMismatch(
            f"family {d.name} is a HistogramFamily but map {d.table}'s value is {_type_name(leaf)}, not struct "
            "bcgov_hist (probes/bcgov_hist.h); declare the map's value struct bcgov_hist, or the family a CounterFamily")
    length = getattr(slots, "_length_", None)
    if length != d.slots:
        raise DeclarationMismatch(
            f"family {d.name} declares {d.slots} slots but map {d.table}'s struct bcgov_hist has {length}; "
            "make HistogramFamily(slots=...) and the probe's BCGOV_HIST_SLOTS agree")


def _check_label(d: f.CounterFamily | f.HistogramFamily, label: f.Label, table: Any) -> None:
    key = table.Key
    names = [n for n, *_ in getattr(key, "_fields_", ())] or None  # None: a scalar key
    where = f"family {d.name}: label {_label_name(label)}"
    for name in label.fields:
        if name == f.KEY and names is not None:
            raise DeclarationMismatch(
                f"{where} reads the whole key (KEY) but map {d.table}'s key is struct {_type_name(key)} "
                f"({', '.join(names)}); name the field it reads")
        if name != f.KEY and names is None:
            raise DeclarationMismatch(
                f"{where} reads key field {name!r} but map {d.table}'s key is a scalar ({_type_name(key)}); "
                "read it as KEY, or give the map a struct key with that field")
        if name != f.KEY and names is not None and name not in names:
            raise DeclarationMismatch(
                f"{where} reads key field {name!r}, which map {d.table}'s key struct {_type_name(key)} lacks "
                f"(it has {', '.join(names)}); fix the field name in the declaration or in the C")
    read = _key_function(label)
    if read is None:
        return
    try:
        read(key())
    except AttributeError as exc:  # the function reads a field the key struct lacks
        raise DeclarationMismatch(
            f"{where}: its function {getattr(read, '__name__', repr(read))} fails on map {d.table}'s key struct "
            f"{_type_name(key)} ({exc}); make it read the fields the C's key has") from exc
    except Exception:  # a zeroed key may be no real key: only a missing field is a mismatch
        pass


def _key_function(label: f.Label) -> Callable[[Any], object] | None:
    if isinstance(label, (f.LocalEndpoint, f.PeerEndpoint)):
        return label.address
    if isinstance(label, f.ComputedLabel):
        return label.value
    return None


def _label_name(label: f.Label) -> str:
    name = getattr(label, "name", "") or ",".join(getattr(label, "labels", ()))
    return f"{type(label).__name__}({name})" if name else type(label).__name__


def _type_name(t: Any) -> str:
    if isinstance(t, type) and issubclass(t, ctypes.Array):
        return f"{_type_name(t._type_)}[{t._length_}]"
    return getattr(t, "__name__", repr(t))
