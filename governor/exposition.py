"""Reading a /metrics page the way Prometheus 2.x reads and stores it.

The governor must count what Prometheus will hold, so this follows Prometheus' own parsers
(`model/textparse` promparse/openmetricsparse and the scrape loop, 2.42), not a client library's
model of metric families:

- A sample's name is stored as written. A text-format `# TYPE foo counter` whose samples are named
  `foo` stays `foo` (prometheus_client's parser would report `foo_total`, a name nothing stores).
- Types and families come from `# TYPE` lines only: `foo_bucket`, `foo_count`, `foo_sum` of a
  histogram `foo` are one family (see `family_of`).
- Values are not judged: OpenMetrics that client_golang writes (a negative histogram `_sum`, for
  one) is accepted, like Prometheus accepts it. Exemplars are read past; `_created` samples are
  ordinary series in Prometheus 2.x (checked against a real Prometheus in the corpus test).
- What makes Prometheus fail the whole scrape fails here too, with the line: a malformed line, a
  value that is not a float, a label value that is not UTF-8, a label name given twice, and for
  OpenMetrics a missing `# EOF`.
- The body is UTF-8 whatever the Content-Type says (both formats are defined as UTF-8).

Samples are returned per name as sets of label sets (empty values dropped, as Prometheus' label
builder does); a sample given twice in one page is one series (Prometheus drops the duplicate).
"""

from __future__ import annotations

import dataclasses
import math
import re

from governor.inventory import LabelSet, MetricInventory

OPENMETRICS = "openmetrics"
TEXT = "text"
# The types whose samples form one family under several names; their le/quantile labels are part
# of the family's shape, not cardinality to trim.
GROUPED_TYPES = frozenset({"histogram", "summary", "gaugehistogram"})
SHAPE_LABELS = frozenset({"le", "quantile"})
# Name suffixes each type may add to its family name (OpenMetrics 1.0, section "Metric types").
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
}
_ALL_SUFFIXES = tuple(sorted({s for ss in _SUFFIXES.values() for s in ss}, key=len, reverse=True))
_TEXT_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_OM_TYPES = frozenset({"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown"})

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_HEAD = re.compile(rf"({_NAME})")  # Prometheus refuses a sample line that starts with whitespace
_BRACE = re.compile(r"[ \t]*\{")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"')
_COMMA = re.compile(r"[ \t]*,")
_CLOSE = re.compile(r"[ \t]*\}")
# OpenMetrics allows no whitespace inside the braces (Prometheus' parser refuses it, seen).
_OM_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_OM_COMMA = re.compile(r",")
_OM_CLOSE = re.compile(r"\}")
_META = re.compile(rf"#[ \t]+(HELP|TYPE|UNIT)[ \t]+({_NAME})(?:[ \t]+(.*))?$")
_INT = re.compile(r"-?[0-9]+$")
_UNESCAPE = re.compile(r"\\(.)")


class ExpositionError(ValueError):
    """The page is one Prometheus would refuse to ingest; the message names the line."""


@dataclasses.dataclass
class Exposition:
    """One parsed page: series per stored sample name, and the `# TYPE` of each family name."""

    format: str
    series: dict[str, set[LabelSet]]
    types: dict[str, str]

    @property
    def total_series(self) -> int:
        return sum(len(s) for s in self.series.values())


def format_of(content_type: str) -> str:
    """The parser Prometheus picks for a Content-Type: OpenMetrics for
    `application/openmetrics-text`, the text format for anything else (also a missing header)."""
    return OPENMETRICS if content_type.split(";")[0].strip().lower() == "application/openmetrics-text" else TEXT


def decode(body: bytes) -> str:
    """The body as text, UTF-8 whatever the header says; bytes that are not UTF-8 are kept as
    surrogates so that only a label value holding them is refused (as Prometheus does)."""
    text = body.decode("utf-8", errors="surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def parse(text: str, fmt: str = TEXT) -> Exposition:
    """Parse a page in `fmt` (TEXT or OPENMETRICS). Raises `ExpositionError` on what Prometheus
    refuses."""
    series: dict[str, set[LabelSet]] = {}
    types: dict[str, str] = {}
    om = fmt == OPENMETRICS
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    eof = False
    for no, line in enumerate(lines, 1):
        if eof:
            raise ExpositionError(f"line {no}: data after '# EOF'")
        if om and line == "# EOF":
            eof = True
            continue
        if not line.strip():
            if om:
                raise ExpositionError(f"line {no}: empty line (OpenMetrics allows none)")
            continue
        if line.lstrip().startswith("#"):
            _meta(line.strip(), no, types, om)
            continue
        name, labels = _sample(line, no, om)
        bucket = series.get(name)
        if bucket is None:
            bucket = series[name] = set()
        bucket.add(labels)
    if om and not eof:
        raise ExpositionError("the page does not end with '# EOF' (required by OpenMetrics)")
    return Exposition(fmt, series, types)


def _meta(line: str, no: int, types: dict[str, str], om: bool) -> None:
    m = _META.match(line)
    if m is None:
        return  # any other comment is ignored, also a bare `# HELP` (as Prometheus does, seen)
    kind, name, rest = m.groups()
    if kind == "TYPE":
        t = (rest or "").strip()
        if t not in (_OM_TYPES if om else _TEXT_TYPES):
            raise ExpositionError(f"line {no}: invalid metric type {t!r} for {name}")
        types[name] = "unknown" if t == "untyped" else t  # Prometheus' metadata says `unknown` too


def _sample(line: str, no: int, om: bool) -> tuple[str, LabelSet]:
    m = _HEAD.match(line)
    if m is None:
        raise ExpositionError(f"line {no}: not a sample line: {_short(line)}")
    name, pos = m.group(1), m.end()
    labels: dict[str, str] = {}
    label_re, comma_re, close_re = (_OM_LABEL, _OM_COMMA, _OM_CLOSE) if om else (_LABEL, _COMMA, _CLOSE)
    brace = _BRACE.match(line, pos)
    if brace is not None:
        pos = brace.end()
        while (lm := label_re.match(line, pos)) is not None:
            k, raw = lm.group(1), lm.group(2)
            if k in labels:
                raise ExpositionError(f"line {no}: label name {k!r} is given twice")
            v = _UNESCAPE.sub(_unescape, raw) if "\\" in raw else raw
            if any("\udc80" <= c <= "\udcff" for c in v):
                raise ExpositionError(f"line {no}: label {k} has a value that is not valid UTF-8")
            labels[k] = v
            pos = lm.end()
            comma = comma_re.match(line, pos)
            if comma is None:
                break
            pos = comma.end()
        close = close_re.match(line, pos)
        if close is None:
            raise ExpositionError(f"line {no}: malformed labels: {_short(line)}")
        pos = close.end()
    rest = line[pos:]
    # The text format takes a value right after `}` (seen); a bare name needs the separator.
    if not rest[:1].isspace() and (om or brace is None or not rest):
        raise ExpositionError(f"line {no}: no value after the name and labels: {_short(line)}")
    head, hash_, _ = rest.partition("#")  # an OpenMetrics exemplar follows '#'
    if hash_ and not om:
        raise ExpositionError(f"line {no}: unexpected '#' after the value (exemplars need OpenMetrics)")
    fields = head.strip(" \t").split(" ") if "\t" not in head else re.split(r"[ \t]+", head.strip(" \t"))
    fields = [f for f in fields if f]
    if not fields or len(fields) > 2:
        raise ExpositionError(f"line {no}: expected a value and an optional timestamp: {_short(line)}")
    if not _is_float(fields[0]):
        raise ExpositionError(f"line {no}: value {_short(fields[0])!r} is not a number")
    if len(fields) == 2 and not (_is_float(fields[1]) if om else bool(_INT.match(fields[1]))):
        raise ExpositionError(f"line {no}: timestamp {_short(fields[1])!r} is not valid")
    return name, tuple(sorted(kv for kv in labels.items() if kv[1] != "" and kv[0] != "__name__"))


def _unescape(m: re.Match[str]) -> str:
    c = m.group(1)
    return "\n" if c == "n" else c if c in '\\"' else "\\" + c


def _is_float(s: str) -> bool:
    """A value Prometheus' lexer and Go's strconv.ParseFloat both take: decimal, Inf/Infinity/NaN
    in any case; no hex (refused by Prometheus 2.42, seen), no underscores (Python's float() takes
    `1_000`), no overflow to Inf, no stray whitespace such as the `\\r` of a CRLF line."""
    if "_" in s or s != s.strip() or s.lstrip("+-")[:2].lower() == "0x":
        return False
    try:
        v = float(s)
    except ValueError:
        return False
    return not math.isinf(v) or s.lstrip("+-").lower() in ("inf", "infinity")


def _short(s: str, limit: int = 80) -> str:
    return s if len(s) <= limit else s[: limit - 3] + "..."


def family_of(name: str, types: dict[str, str]) -> tuple[str | None, str | None]:
    """(type, family) of a stored sample name given the `# TYPE`s (or metadata) by family name.

    `family` is the family name for members of histograms and summaries (`foo` for `foo_bucket`,
    and for a summary's quantile series `foo` itself), else None. A name that has its own TYPE
    keeps it: a counter `foo` beside a gauge `foo_total` are two metrics."""
    t = types.get(name)
    if t is not None:
        return t, (name if t in GROUPED_TYPES else None)
    for suffix in _ALL_SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            bt = types.get(base)
            if bt is not None and suffix in _SUFFIXES.get(bt, ()):
                return bt, (base if bt in GROUPED_TYPES else None)
    return None, None


def infer_families(metrics: dict[str, MetricInventory]) -> None:
    """Give histogram/summary families to metrics that have no type (no `# TYPE` line; a backend
    without a metadata API such as VictoriaMetrics), from their shape: `X_bucket` whose every series
    has `le` is the histogram `X`, a metric whose every series has `quantile` is the summary `X`; the
    family's `X_count`, `X_sum` and `X_created` follow. Changes `metrics` in place."""
    for name, m in list(metrics.items()):
        if m.family or m.type or m.truncated or not m.series:
            continue
        if name.endswith("_bucket") and all(any(k == "le" for k, _ in s) for s in m.series):
            base, type_ = name[: -len("_bucket")], "histogram"
        elif all(any(k == "quantile" for k, _ in s) for s in m.series):
            base, type_ = name, "summary"
        else:
            continue
        for member in (name, base + "_count", base + "_sum", base + "_created"):
            mm = metrics.get(member)
            if mm is not None and mm.family is None and mm.type is None:
                mm.family, mm.type = base, type_
