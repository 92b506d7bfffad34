"""A throwaway nginx on a loopback port answering every request with a tiny 200: the server side of
the connection storm (Debian's nginx-light, one worker, no access log)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.common import BenchError, free_port, wait_until

CONFIG = """\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  server {{ listen 127.0.0.1:{port} backlog=8192; location / {{ return 200 "ok\\n"; }} }}
}}
"""


@contextlib.contextmanager
def running_nginx() -> Iterator[int]:
    """Start nginx on a free loopback port; yield the port; stop it and remove its files."""
    d = Path(tempfile.mkdtemp(prefix="bcgov-bench-nginx-"))
    port = free_port()
    (d / "nginx.conf").write_text(CONFIG.format(d=d, port=port))
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([binary, "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import socket

        def up() -> bool:
            if proc.poll() is not None:
                raise BenchError(f"nginx exited: {proc.stderr.read().decode()[-300:] if proc.stderr else ''}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(up, 10, "nginx to listen")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)
