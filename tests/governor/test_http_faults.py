"""Answers that broke the HTTP client (governor/http.py) with a traceback in the trial report:
a body cut short of its Content-Length, a body that does not decompress, a redirect away from
http(s). Each is a local stand-in exporter (tests/servers.serve_http) sending exactly those
bytes; each must be one line on stderr naming the cause, with the usual exit code."""

from __future__ import annotations

import http.server
from pathlib import Path
from typing import Any

from tests import servers


def _server(respond):
    state = {"n": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state["n"] += 1
            respond(self)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler, state


def _truncated(h: http.server.BaseHTTPRequestHandler) -> None:
    """The trial's /trunc: Content-Length 1000, 8 bytes sent, then the connection closes."""
    h.send_response(200)
    h.send_header("Content-Length", "1000")
    h.end_headers()
    h.wfile.write(b"a 1\nb 2\n")
    h.close_connection = True


def _bad_gzip(h: http.server.BaseHTTPRequestHandler) -> None:
    body = b"not gzip at all\n"
    h.send_response(200)
    h.send_header("Content-Encoding", "gzip")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _redirect_to_ftp(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(302)
    h.send_header("Location", "ftp://x/metrics")
    h.send_header("Content-Length", "0")
    h.end_headers()


def _one_line(result: Any, *needles: str) -> str:
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bcgov: error: "), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _report(cli, runner, budgets_file: Path, url: str, retries: str) -> Any:
    return runner.invoke(cli, ["budget", "report", "--no-history", "--retries", retries, "--scrape", url,
                               "--budgets", str(budgets_file)])


def test_a_body_cut_short_is_retried_then_one_line(cli, runner, budgets_file: Path) -> None:
    handler, state = _server(_truncated)
    with servers.serve_http(handler, "trunc") as port:
        url = f"http://127.0.0.1:{port}/trunc"
        result = _report(cli, runner, budgets_file, url, "1")
    assert result.exit_code == 4, result.output
    _one_line(result, f"cannot read scrape target at {url}", "cut short or corrupt", "IncompleteRead")
    assert state["n"] == 2  # retried once, like a connection cut


def test_a_body_that_does_not_decompress_is_one_line(cli, runner, budgets_file: Path) -> None:
    handler, _ = _server(_bad_gzip)
    with servers.serve_http(handler, "badgzip") as port:
        result = _report(cli, runner, budgets_file, f"http://127.0.0.1:{port}/gzip", "0")
    assert result.exit_code == 4, result.output
    _one_line(result, "cut short or corrupt")


def test_a_redirect_to_ftp_names_the_redirect_not_the_url_given(cli, runner, budgets_file: Path) -> None:
    handler, _ = _server(_redirect_to_ftp)
    with servers.serve_http(handler, "redir") as port:
        result = _report(cli, runner, budgets_file, f"http://127.0.0.1:{port}/redir", "0")
    line = _one_line(result, "redirected to a URL that is not http(s)", "ftp://x/metrics", "pass the final http(s) URL")
    assert "is not a usable URL" not in line
    assert result.exit_code == 4, result.output
