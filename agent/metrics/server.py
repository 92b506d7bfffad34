"""The agent's HTTP endpoint: /metrics (text or OpenMetrics, by Accept header, so exemplars
reach Prometheus), /healthz (alive) and /readyz (the probes readiness requires are attached; the
body says why not, agent/metrics/readiness.py). Listens only where configured."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector


class MetricsServer:
    """A small threaded HTTP server bound to one address, exposing `registry` (the agent passes
    its guarded view: every family within its series budget)."""

    def __init__(self, host: str, port: int, registry: Collector, ready: Callable[[], tuple[bool, str]]) -> None:
        """`ready()` returns (ready?, the text /readyz answers with)."""
        registry_ = registry
        ready_ = ready

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    body = encoder(registry_)
                    self._send(200, content_type, body)
                elif path == "/healthz":
                    self._send(200, "text/plain", b"ok\n")
                elif path == "/readyz":
                    ok, text = ready_()
                    self._send(200 if ok else 503, "text/plain; charset=utf-8", text.encode())
                else:
                    self._send(404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes are not news
                pass

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise OSError(
                f"cannot listen on {host}:{port} for metrics: {exc.strerror}; pick another --metrics-addr "
                "or stop what holds the port"
            ) from exc
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="bcgov-metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
