"""Real servers for tests: Debian's Prometheus, Alertmanager, VictoriaMetrics and vmagent, and a tiny
exposition server.

A reusable library (not a conftest): any test module may import it.

    with servers.serve_exposition(TEXT) as exporter, \
         servers.start_prometheus(servers.scrape_config(exporter.target, job="x"), tmp_path) as prom:
        prom.wait_for_first_scrape("x")
        prom.query("count(up)")

Every server binds a free loopback port, keeps its state in a temp directory under `tmp_path`, is
polled for readiness (never a fixed sleep) and is stopped and its directory removed on exit, also
when the test body raised. Nothing here touches the Debian system services or their config.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"
# Generous upper bounds for polling; a healthy server is ready far sooner. The first Prometheus
# scrape comes ~5 s after start (discovery throttling), hence the larger scrape bound.
READY_TIMEOUT_S = 20.0
SCRAPE_TIMEOUT_S = 30.0
POLL_S = 0.1
_START_ATTEMPTS = 3  # a free port can be taken between probing and binding; retry on a new one


class ServerError(RuntimeError):
    """A test server failed to start or answer; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(predicate: Callable[[], Any], timeout: float, what: str, on_timeout: Callable[[], str] = lambda: "") -> Any:
    """Call `predicate` until it returns something truthy; raise ServerError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except (requests.RequestException, ValueError, KeyError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc})" if last_exc else ""
            raise ServerError(f"timed out after {timeout:.0f}s waiting for {what}{detail}\n{on_timeout()}")
        time.sleep(POLL_S)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class _Process:
    """A started server process with its work dir and log; `stop` is idempotent."""

    proc: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return _tail(self.log_path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _spawn(argv_for_port: Callable[[int, Path], list[str]], tmp_path: Path, name: str, ready_path: str) -> _Process:
    """Start a server on a free port, retrying on a port race, and wait until `ready_path` is 200."""
    last_err = ""
    for _ in range(_START_ATTEMPTS):
        port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_path))
        log_path = workdir / f"{name}.log"
        argv = argv_for_port(port, workdir)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        server = _Process(proc, workdir, log_path, port)

        def ready(proc: subprocess.Popen[bytes] = proc, server: _Process = server) -> bool:
            if proc.poll() is not None:
                raise ServerError(f"{name} exited with {proc.returncode}")
            return requests.get(server.url + ready_path, timeout=1).status_code == 200

        try:
            poll(ready, READY_TIMEOUT_S, f"{name} on port {port}", server.log_tail)
            return server
        except ServerError as exc:
            server.stop()
            last_err = f"{exc}\n{server.log_tail()}"
            shutil.rmtree(workdir, ignore_errors=True)
            if "address already in use" not in last_err:
                break
    raise ServerError(f"{name} did not start: {last_err}")


# --------------------------------------------------------------------------------------- Prometheus


def scrape_config(
    target: str,
    job: str = "test",
    interval: str = "1s",
    metric_relabel_configs: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A minimal prometheus.yml scraping one `host:port` target every `interval`."""
    import yaml

    job_cfg: dict[str, Any] = {"job_name": job, "static_configs": [{"targets": [target]}]}
    if metric_relabel_configs:
        job_cfg["metric_relabel_configs"] = metric_relabel_configs
    cfg: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [job_cfg],
    }
    cfg.update(extra or {})
    return yaml.safe_dump(cfg, sort_keys=False)


@dataclass
class _QueryApiServer:
    """A running server with the Prometheus query API (Prometheus, VictoriaMetrics); query helpers
    return parsed `data` from the HTTP API."""

    _p: _Process

    api_timeout_s = 10.0

    @property
    def url(self) -> str:
        return self._p.url

    @property
    def workdir(self) -> Path:
        return self._p.workdir

    def log_tail(self) -> str:
        return self._p.log_tail()

    def api(self, path: str, **params: Any) -> Any:
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=self.api_timeout_s)
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise ServerError(f"{path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector."""
        return list(self.api("query", query=expr)["result"])

    def scalar(self, expr: str) -> float | None:
        """The single value of an instant query, or None when the vector is empty."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


@dataclass
class PrometheusServer(_QueryApiServer):
    """A running Prometheus."""

    config_path: Path

    def targets(self, job: str) -> list[dict[str, Any]]:
        return [t for t in self.api("targets")["activeTargets"] if t["labels"].get("job") == job]

    def wait_for_first_scrape(self, job: str, timeout: float = SCRAPE_TIMEOUT_S) -> None:
        """Block until every target of `job` has been scraped successfully at least once."""
        self.wait_for_scrape_after(job, 0.0, timeout)

    def wait_for_scrape_after(self, job: str, after: float, timeout: float = SCRAPE_TIMEOUT_S) -> None:
        """Block until every target of `job` finished a healthy scrape that started after `after`
        (a Unix time), and its samples are queryable."""

        def scraped() -> bool:
            ts = self.targets(job)
            if not ts:
                return False
            for t in ts:
                if t["health"] != "up":
                    return False
                # lastScrape is RFC 3339; compare as a Unix time. Zero time means "never".
                if _rfc3339_to_unix(t["lastScrape"]) <= after:
                    return False
            return self.scalar(f'count(up{{job="{job}"}} == 1)') == len(ts)

        poll(scraped, timeout, f"a scrape of job {job!r}", self.log_tail)

    def reload(self, config_yaml: str) -> float:
        """Write a new config and reload it (needs --web.enable-lifecycle, which start_prometheus
        passes); returns the Unix time just before the reload, for `wait_for_scrape_after`."""
        self.config_path.write_text(config_yaml)
        before = time.time()
        r = requests.post(f"{self.url}/-/reload", timeout=10)
        if r.status_code != 200:
            raise ServerError(f"reload failed: {r.status_code} {r.text}\n{self.log_tail()}")
        return before


def _rfc3339_to_unix(ts: str) -> float:
    from datetime import datetime

    if ts.startswith("0001-"):
        return 0.0
    # Prometheus emits nanoseconds; Python's fromisoformat wants at most microseconds.
    head, _, rest = ts.partition(".")
    if rest:
        frac = "".join(c for c in rest if c.isdigit())
        tz = rest[len(frac):]
        ts = f"{head}.{frac[:6]}{tz}"
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@contextlib.contextmanager
def start_prometheus(config_yaml: str, tmp_path: Path, extra_args: Sequence[str] = ()) -> Iterator[PrometheusServer]:
    """Run Debian's Prometheus with `config_yaml` on a free loopback port until the block exits.

    Lifecycle (reload) and admin APIs are enabled: the server is private to the test.
    """
    config_path: Path | None = None

    def argv(port: int, workdir: Path) -> list[str]:
        nonlocal config_path
        config_path = workdir / "prometheus.yml"
        config_path.write_text(config_yaml)
        return [
            PROMETHEUS_BIN,
            f"--config.file={config_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={workdir / 'data'}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            *extra_args,
        ]

    p = _spawn(argv, tmp_path, "prometheus", "/-/ready")
    assert config_path is not None
    try:
        yield PrometheusServer(p, config_path)
    finally:
        p.stop()
        shutil.rmtree(p.workdir, ignore_errors=True)


# ------------------------------------------------------------------------------------- Alertmanager

DEFAULT_ALERTMANAGER_CONFIG = """\
route:
  receiver: blackhole
  group_wait: 0s
receivers:
  - name: blackhole
"""


@dataclass
class AlertmanagerServer:
    """A running Alertmanager."""

    _p: _Process

    @property
    def url(self) -> str:
        return self._p.url

    def log_tail(self) -> str:
        return self._p.log_tail()

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts; `filters` become `filter=name="value"` matchers."""
        params = [("filter", f'{k}="{v}"') for k, v in filters.items()]
        r = requests.get(f"{self.url}/api/v2/alerts", params=params, timeout=10)
        r.raise_for_status()
        return list(r.json())

    def wait_for_alerts(self, count: int, timeout: float = READY_TIMEOUT_S, **filters: str) -> list[dict[str, Any]]:
        """Poll until at least `count` alerts match `filters`; returns them."""
        return poll(lambda: (a := self.alerts(**filters)) and len(a) >= count and a, timeout, f"{count} alert(s) {filters}", self.log_tail)


@contextlib.contextmanager
def start_alertmanager(
    tmp_path: Path, config_yaml: str = DEFAULT_ALERTMANAGER_CONFIG, extra_args: Sequence[str] = ()
) -> Iterator[AlertmanagerServer]:
    """Run Debian's Alertmanager with clustering off on a free loopback port until the block exits."""

    def argv(port: int, workdir: Path) -> list[str]:
        cfg = workdir / "alertmanager.yml"
        cfg.write_text(config_yaml)
        return [
            ALERTMANAGER_BIN,
            f"--config.file={cfg}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            *extra_args,
        ]

    p = _spawn(argv, tmp_path, "alertmanager", "/-/ready")
    try:
        yield AlertmanagerServer(p)
    finally:
        p.stop()
        shutil.rmtree(p.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------- VictoriaMetrics

VICTORIAMETRICS_BIN = "victoria-metrics"
VMAGENT_BIN = "vmagent"


@dataclass
class VictoriaMetricsServer(_QueryApiServer):
    """A running single-node VictoriaMetrics (Debian's `victoria-metrics`): the query API a
    cluster's vmselect serves, `/api/v1/import/prometheus` and `/api/v1/write` for data."""

    api_timeout_s = 30.0

    def import_prometheus(self, text: str) -> None:
        """Write Prometheus text-format lines (with millisecond timestamps) to the server."""
        r = requests.post(f"{self.url}/api/v1/import/prometheus", data=text.encode(), timeout=120)
        if r.status_code != 204:
            raise ServerError(f"import refused: {r.status_code} {r.text[:300]}\n{self.log_tail()}")

    def wait_for_count(self, selector: str, count: int, timeout: float = SCRAPE_TIMEOUT_S) -> None:
        """Poll until `count(selector)` is `count` (written data becomes visible after the
        latency offset and the next flush)."""
        poll(lambda: self.scalar(f"count({selector})") == count, timeout, f"{count} series {selector}", self.log_tail)


@contextlib.contextmanager
def start_victoriametrics(tmp_path: Path, extra_args: Sequence[str] = ()) -> Iterator[VictoriaMetricsServer]:
    """Run Debian's single-node VictoriaMetrics on a free loopback port until the block exits. The
    query cache is off and the latency offset 1 s, so written data is queryable at once."""

    def argv(port: int, workdir: Path) -> list[str]:
        return [VICTORIAMETRICS_BIN, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={workdir / 'data'}",
                "-search.latencyOffset=1s", "-search.disableCache", "-loggerLevel=WARN", *extra_args]

    p = _spawn(argv, tmp_path, "victoria-metrics", "/health")
    try:
        yield VictoriaMetricsServer(p)
    finally:
        p.stop()
        shutil.rmtree(p.workdir, ignore_errors=True)


@contextlib.contextmanager
def start_vmagent(scrape_config_yaml: str, remote_write_url: str, tmp_path: Path) -> Iterator[_Process]:
    """Run Debian's `vmagent` scraping per `scrape_config_yaml` (Prometheus' format, with
    `metric_relabel_configs`) and remote-writing to `remote_write_url` until the block exits."""

    def argv(port: int, workdir: Path) -> list[str]:
        cfg = workdir / "scrape.yml"
        cfg.write_text(scrape_config_yaml)
        return [VMAGENT_BIN, f"-httpListenAddr=127.0.0.1:{port}", f"-promscrape.config={cfg}",
                f"-remoteWrite.url={remote_write_url}", f"-remoteWrite.tmpDataPath={workdir / 'queue'}",
                "-remoteWrite.flushInterval=200ms", "-loggerLevel=WARN"]

    p = _spawn(argv, tmp_path, "vmagent", "/health")
    try:
        yield p
    finally:
        p.stop()
        shutil.rmtree(p.workdir, ignore_errors=True)


# ------------------------------------------------------------------------ exposition (a fake exporter)


@dataclass
class ExpositionServer:
    """Serves a mutable exposition body at /metrics on loopback; counts requests."""

    port: int
    content_type: str = "text/plain; version=0.0.4; charset=utf-8"
    _body: bytes = b""
    requests_served: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def target(self) -> str:
        """`host:port`, as a Prometheus static target."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def set_body(self, text: str, content_type: str | None = None) -> None:
        with self._lock:
            self._body = text.encode()
            if content_type:
                self.content_type = content_type

    def _get(self) -> tuple[bytes, str]:
        with self._lock:
            self.requests_served += 1
            return self._body, self.content_type


@contextlib.contextmanager
def serve_http(handler: type[http.server.BaseHTTPRequestHandler], name: str) -> Iterator[int]:
    """`handler` served by a threaded HTTP server on a free loopback port (yielded) until the
    block exits; shut down and closed even when the test fails."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def serve_exposition(body: str, content_type: str | None = None) -> Iterator[ExpositionServer]:
    """A threaded HTTP server on a free loopback port answering /metrics with `body`."""
    state = ExpositionServer(port=0)
    state.set_body(body, content_type)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            data, ctype = state._get()
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    with serve_http(Handler, "exposition") as port:
        state.port = port
        yield state
