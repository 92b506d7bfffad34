"""Agent configuration: defaults, an optional YAML file, then command-line overrides.

Unknown keys and bad values are errors that name the file, the line and the fix: a typo in a
config file must not silently run the agent with defaults.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from agent.redaction import url_credentials
from probes import registry


def _as_typed(value: object) -> object:
    """A number as a user writes it in an error: numeric settings are kept as floats, so `-1`
    would otherwise read back as `-1.0`."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class ConfigError(Exception):
    """The configuration is invalid; the message names where and how to fix it."""


# One line of the spans file is one batch of up to 512 spans (agent/export/queue.py): a file smaller
# than a batch line would drop every batch. 4 MiB holds 512 spans of 8 KB each.
SPANS_FILE_MIN_BYTES = 4 * 1024 * 1024
# A BPF ring buffer's size is a u32 in bytes (BCC warns and wraps it to 0 above that).
RING_BUFFER_MAX_BYTES = 2**31


@dataclass
class AgentConfig:
    """Everything `bcgov agent run` can be told."""

    metrics_addr: str = "127.0.0.1:9464"
    otlp_endpoint: str | None = None
    otlp_protocol: str = "grpc"
    # Headers sent with every OTLP request (authorization, a tenant id): values never logged;
    # credential headers only over https or to loopback (agent/redaction/url_credentials.py).
    otlp_headers: dict = field(default_factory=dict)
    spans_file: str = "var/spans.jsonl"
    log_file: str | None = None
    duration: float | None = None
    probes: list[str] = field(default_factory=registry.names)
    ring_buffer_pages: int = 256
    summary_interval: float = 3.0
    span_queue_size: int = 16384
    identity: bool = True
    span_sample_ratio: float = 1.0
    slow_connection_seconds: float = 1.0
    # Records of normal, fast connections the kernel sends per second at most (a token bucket in
    # tcp_lifecycle.bpf.c; failed, reset, retransmitted and slow ones always go): bounds the
    # agent's CPU at any connection rate. 0: every connection a span. agent/kernel/sampling.py.
    span_budget_per_second: float = 1000.0
    span_budget_burst: int | None = None  # tokens saved up; default one second's worth
    # Optionally also per workload (the owner's cgroup), so one busy workload cannot spend the
    # node's budget alone; 0: none.
    span_budget_per_workload_per_second: float = 0.0
    # Node-wide kernel switch (every BPF program on the node pays a clock read per run): opt in.
    bpf_stats: bool = False
    # Cores (0.05 = 5 % of one); over it, span work is shed. Off by default: see agent/selfcost/overhead.py.
    cpu_budget: float | None = None
    cpu_budget_window: float = 5.0
    node_name: str | None = None
    kubeconfig: str | None = None
    tiers: dict = field(default_factory=dict)
    otlp_timeout_seconds: float = 5.0
    series_budget_default: int = 2000
    series_budgets: dict = field(default_factory=dict)
    # Local files rotate by size (agent/export/rotating_file.py): at most max_bytes * (backups + 1) each.
    spans_file_max_bytes: int = 64 * 1024 * 1024
    spans_file_backups: int = 3
    log_file_max_bytes: int = 64 * 1024 * 1024
    log_file_backups: int = 3
    # Probes /readyz needs up: "all" (every configured probe) or a list of names (agent/metrics/readiness.py).
    ready_requires: list[str] | str = "all"
    # Where event lines go: "local" (stderr, or log_file), "otlp" (LogRecords to otlp_endpoint),
    # "both", or "auto" (both when otlp_endpoint is set, else local). agent/export/otlp_logs.py.
    logs: str = "auto"
    log_queue_size: int = 16384

    def log_destinations(self) -> tuple[bool, bool]:
        """(write lines locally, send them over OTLP) for the `logs` setting."""
        mode = self.logs
        if mode == "auto":
            mode = "both" if self.otlp_endpoint else "local"
        return mode in ("local", "both"), mode in ("otlp", "both")

    def metrics_host_port(self) -> tuple[str, int] | None:
        """(host, port) to listen on, or None when metrics serving is off ('' or 'off')."""
        if self.metrics_addr in ("", "off", "none"):
            return None
        host, sep, port = self.metrics_addr.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"metrics_addr {self.metrics_addr!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
        return host.strip("[]") or "0.0.0.0", int(port)

    def validate(self, where: str = "config", lines: dict[str, int] | None = None) -> None:
        """Check values that the types alone do not; `lines` maps a key to its line in `where`
        (for the errors of nested settings such as tiers). Raises ConfigError naming the fix."""

        def at(key: str) -> str:
            return _at(where, lines, key)

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{at(f.name)}: {f.name} must be a finite number, not {value}")
        try:
            self.metrics_host_port()
        except ConfigError as exc:
            raise ConfigError(f"{at('metrics_addr')}: {exc}") from exc
        unknown = [p for p in self.probes if p not in registry.names()]
        if unknown:
            raise ConfigError(f"{at('probes')}: unknown probe(s) {', '.join(unknown)}; known: {', '.join(registry.names())}")
        if self.otlp_protocol not in ("grpc", "http"):
            raise ConfigError(f"{at('otlp_protocol')}: otlp_protocol must be 'grpc' or 'http', not {self.otlp_protocol!r}")
        if self.otlp_endpoint is not None:
            _check_endpoint(self.otlp_endpoint, at('otlp_endpoint'))
        try:
            self.otlp_headers = url_credentials.check_headers(self.otlp_headers, self.otlp_endpoint)
            if self.otlp_endpoint is not None:
                url_credentials.exporter_endpoint(self.otlp_endpoint, self.otlp_headers)
        except ValueError as exc:  # CleartextCredentials too; messages never hold a value
            raise ConfigError(f"{where}: {exc}") from exc
        pages = self.ring_buffer_pages
        page = os.sysconf("SC_PAGE_SIZE")
        if pages < 1 or pages & (pages - 1) or pages * page > RING_BUFFER_MAX_BYTES:
            raise ConfigError(f"{at('ring_buffer_pages')}: ring_buffer_pages must be a power of two (e.g. 256) whose size in bytes "
                              f"(pages x {page}) fits the kernel's u32 map size: at most {RING_BUFFER_MAX_BYTES // page}, "
                              f"not {pages}")
        if self.span_queue_size < 1:
            raise ConfigError(f"{at('span_queue_size')}: span_queue_size must be >= 1 (e.g. 16384); a smaller queue drops every span, "
                              f"not {self.span_queue_size}")
        if self.summary_interval <= 0:
            raise ConfigError(f"{at('summary_interval')}: summary_interval must be > 0 seconds (e.g. 3), not {_as_typed(self.summary_interval)}")
        if self.slow_connection_seconds < 0:
            raise ConfigError(f"{at('slow_connection_seconds')}: slow_connection_seconds must be >= 0 seconds (e.g. 1), "
                              f"not {_as_typed(self.slow_connection_seconds)}")
        if not 0.0 <= self.span_sample_ratio <= 1.0:
            raise ConfigError(f"{at('span_sample_ratio')}: span_sample_ratio must be within 0..1, not {_as_typed(self.span_sample_ratio)}")
        if self.span_budget_per_second < 0:
            raise ConfigError(f"{at('span_budget_per_second')}: span_budget_per_second must be >= 0 (0: every connection a span), "
                              f"not {_as_typed(self.span_budget_per_second)}")
        if self.span_budget_per_workload_per_second < 0:
            raise ConfigError(f"{at('span_budget_per_workload_per_second')}: span_budget_per_workload_per_second must be >= 0 (0: no per-workload budget), "
                              f"not {_as_typed(self.span_budget_per_workload_per_second)}")
        if self.span_budget_burst is not None and self.span_budget_burst < 1:
            raise ConfigError(f"{at('span_budget_burst')}: span_budget_burst must be >= 1 (spans saved up), or absent for one second's worth")
        if self.cpu_budget is not None and self.cpu_budget <= 0:
            raise ConfigError(f"{at('cpu_budget')}: cpu_budget must be > 0 cores (e.g. 0.05 for 5% of one core), or absent for none")
        if self.cpu_budget_window <= 0:
            raise ConfigError(f"{at('cpu_budget_window')}: cpu_budget_window must be > 0 seconds (e.g. 5)")
        if self.duration is not None and self.duration < 0:
            raise ConfigError(f"{at('duration')}: duration must be >= 0 seconds")
        if self.logs not in ("auto", "local", "otlp", "both"):
            raise ConfigError(f"{at('logs')}: logs must be 'auto', 'local', 'otlp' or 'both', not {self.logs!r}")
        if self.logs in ("otlp", "both") and not self.otlp_endpoint:
            raise ConfigError(f"{at('logs')}: logs: {self.logs} needs otlp_endpoint (e.g. http://collector:4317); "
                              f"or set logs: local")
        if self.log_queue_size < 1:
            raise ConfigError(f"{at('log_queue_size')}: log_queue_size must be >= 1 (e.g. 16384), not {self.log_queue_size}")
        if not 0 < self.otlp_timeout_seconds <= 60:
            raise ConfigError(f"{at('otlp_timeout_seconds')}: otlp_timeout_seconds must be within 0..60 (e.g. 5), not {self.otlp_timeout_seconds}")
        from agent.export.rotating_file import MIN_MAX_BYTES

        for key in ("spans_file", "log_file"):
            max_bytes, backups = getattr(self, f"{key}_max_bytes"), getattr(self, f"{key}_backups")
            least = SPANS_FILE_MIN_BYTES if key == "spans_file" else MIN_MAX_BYTES
            if max_bytes < least:
                why = " (one line is a batch of up to 512 spans and must fit in one file)" if key == "spans_file" else ""
                raise ConfigError(f"{at(key + '_max_bytes')}: {key}_max_bytes must be >= {least}{why} (e.g. 67108864 for 64 MiB), "
                                  f"not {max_bytes}")
            if backups < 0:
                raise ConfigError(f"{at(key + '_backups')}: {key}_backups must be >= 0 (files kept besides the current one), not {backups}")
        if self.ready_requires != "all":
            if not isinstance(self.ready_requires, list) or not self.ready_requires:
                raise ConfigError(f"{at('ready_requires')}: ready_requires must be 'all' or a non-empty list of probe names")
            strange = [p for p in self.ready_requires if p not in registry.names()]
            if strange:
                raise ConfigError(f"{at('ready_requires')}: ready_requires names unknown probe(s) {', '.join(strange)}; "
                                  f"known: {', '.join(registry.names())}")
            outside = [p for p in self.ready_requires if p not in self.probes]
            if outside:
                raise ConfigError(f"{at('ready_requires')}: ready_requires names probe(s) not loaded: {', '.join(outside)}; "
                                  f"configured probes: {', '.join(self.probes)}")
        from agent.metrics.series_guard import budget_errors

        problems = budget_errors(self.series_budget_default, self.series_budgets)
        if problems:
            raise ConfigError(f"{_at(where, lines, 'series_budgets')}: {problems[0]}")
        from agent.identity.errors import IdentityError
        from agent.identity.tiers import TierResolver

        try:
            TierResolver(self.tiers)
        except IdentityError as exc:
            raise ConfigError(f"{_at(where, lines, 'tiers')}: {exc}; known keys: namespaces, labels, ports, "
                              "default_ports") from exc

    def resolved_node_name(self) -> str:
        """This node's name: node_name, else $NODE_NAME, else the hostname."""
        import os
        import socket

        return self.node_name or os.environ.get("NODE_NAME") or socket.gethostname()


def _at(where: str, lines: dict[str, int] | None, key: str) -> str:
    line = (lines or {}).get(key)
    return f"{where} line {line}" if line else where


def _check_endpoint(endpoint: str, where: str) -> None:
    """otlp_endpoint must be an http(s) URL with a host; the message never repeats credentials."""
    try:
        parts = urlsplit(endpoint)
        host, _ = parts.hostname, parts.port  # .port raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{where}: otlp_endpoint is not a usable URL ({exc}); "
                          "use http(s)://HOST:PORT, e.g. http://collector:4317") from exc
    if parts.scheme not in ("http", "https") or not host:
        shown = endpoint if "@" not in endpoint else "(a URL with credentials, not repeated here)"
        raise ConfigError(f"{where}: otlp_endpoint must be an http(s) URL with a host, e.g. http://collector:4317, "
                          f"not {shown!r}")


def _line_of(node: yaml.MappingNode, key: Any, data: dict | None = None) -> int:
    """The line of `key` in `node`; a key YAML read as another type (yes, 1) is found by its
    position in `data`, the mapping built from `node` (same order: duplicates are refused)."""
    for k, _ in node.value:
        if k.value == key:
            return k.start_mark.line + 1
    if data is not None and len(data) == len(node.value) and key in data:
        return node.value[list(data).index(key)][0].start_mark.line + 1
    return node.start_mark.line + 1


def _duplicate_key(node: yaml.Node | None) -> yaml.Node | None:
    """The first key that appears twice in one mapping, anywhere in the document (PyYAML keeps
    the last silently; a config that says two things must not run on one of them)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[tuple[str, str]] = set()
        for k, v in node.value:
            ident = (k.tag, k.value) if isinstance(k, yaml.ScalarNode) else None
            if ident is not None:
                if ident in seen:
                    return k
                seen.add(ident)
            found = _duplicate_key(v)
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found is not None:
                return found
    return None


def _read_yaml(path: str) -> tuple[Any, yaml.Node | None]:
    """(data, node) of a YAML file; ConfigError for an unreadable, non-UTF-8 or invalid file, or a
    duplicate key."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path} line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                          "save the config as UTF-8") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    dup = _duplicate_key(node)
    if dup is not None:
        raise ConfigError(f"{path} line {dup.start_mark.line + 1}: key {dup.value!r} appears twice in one mapping; "
                          "keep one (YAML would silently use the last)")
    return data, node


def load(path: str | None, overrides: dict[str, Any]) -> AgentConfig:
    """Defaults <- YAML file (agent: section or top level) <- overrides (None values ignored)."""
    cfg = AgentConfig()
    names = {f.name: f for f in dataclasses.fields(AgentConfig)}
    lines: dict[str, int] = {}
    if path:
        data, node = _read_yaml(path)
        if isinstance(data, dict) and "agent" in data and isinstance(node, yaml.MappingNode):  # a dict is a mapping node
            beside = [k for k in data if k != "agent"]
            if beside:
                raise ConfigError(
                    f"{path} line {_line_of(node, beside[0])}: top-level key {beside[0]!r} beside the 'agent:' "
                    "section is not read; move it under agent: (unknown keys are errors)")
            node = next(v for k, v in node.value if k.value == "agent")
            data = data["agent"]
            if data is None:
                node = None
            elif not isinstance(data, dict):
                raise ConfigError(f"{path} line {node.start_mark.line + 1}: the agent: section must be a mapping of "
                                  f"settings (key: value), not a {type(data).__name__}")
        if data is None:
            data = {}
        if not isinstance(data, dict) or not isinstance(node, (yaml.MappingNode, type(None))):
            raise ConfigError(f"{path}: expected a mapping of agent settings")
        for key, value in data.items():
            line = _line_of(node, key, data) if node is not None else 1
            if not isinstance(key, str):
                raise ConfigError(f"{path} line {line}: key {key!r} is not a setting name; "
                                  "settings are names such as metrics_addr (quote a key YAML reads as a number or boolean)")
            lines[key.replace("-", "_")] = line
            if key.replace("-", "_") not in names:
                raise ConfigError(f"{path} line {line}: unknown field {key!r}; known: {', '.join(sorted(names))}")
            f = names[key.replace("-", "_")]
            try:
                setattr(cfg, f.name, _coerce(f, value))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{path} line {line}: field {key!r}: {exc}") from exc
        where = path
    else:
        where = "config"
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
            lines.pop(key, None)  # from the command line now: no line in the file to name
    if not cfg.probes:  # checked here, not in validate(): tests build agents with no probes at all
        raise ConfigError(f"{_at(where, lines, 'probes')}: probes is empty: name at least one probe "
                          f"(known: {', '.join(registry.names())}), or leave probes out to load them all")
    cfg.validate(where, lines)
    return cfg


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    t = str(f.type)
    if value is None:
        if "None" in t:
            return None
        raise ValueError("must not be empty")
    if t.startswith("bool"):
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, not {value!r}")
        return value
    if t.startswith("dict"):
        if not isinstance(value, dict):
            raise ValueError("must be a mapping")
        return value
    if t.startswith("list[str] | str") and isinstance(value, str):  # a list of names, or one keyword such as "all"
        return value
    if t.startswith("list"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of names")
        return value
    if t.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, not {value!r}")
        return value
    if t.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, not {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, not {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {value!r}")
    return value
