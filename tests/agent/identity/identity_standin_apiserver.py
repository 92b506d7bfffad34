"""A STAND-IN for kube-apiserver, for the identity tests (no real API server can run here).

It speaks the real wire format the ``kubernetes`` client expects, over HTTPS with a self-signed
certificate made at test time and bearer-token auth:

* ``GET /api/v1/pods?fieldSelector=spec.nodeName=N`` -> a PodList with ``metadata.resourceVersion``;
* the same with ``watch=true&resourceVersion=R`` -> a chunked stream of one JSON event per line
  (ADDED / MODIFIED / DELETED / BOOKMARK), only events newer than R, ending after ``timeoutSeconds``;
  a watch from a compacted version, or any open watch after ``expire_watches()``, gets
  ``{"type":"ERROR","object":{"kind":"Status","code":410,...}}`` and is closed, as the real one does;
* ``GET /apis/apps/v1/namespaces/NS/replicasets/NAME`` and ``/apis/batch/v1/namespaces/NS/jobs/NAME``.

Objects come from recorded fixture JSON (``fixtures/``). Counters (``list_calls``, ``watch_calls``,
``owner_gets``) let tests assert what the client did.
"""

from __future__ import annotations

import copy
import datetime
import http.server
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import threading
import urllib.parse
from typing import Any

TOKEN = "stand-in-token"


def make_self_signed_cert(directory: str) -> tuple[str, str]:
    """Write a self-signed cert/key for 127.0.0.1 (cryptography if importable, else openssl)."""
    cert, key = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=stand-in-apiserver",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        return cert, key
    pk = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    c = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pk.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(pk, hashes.SHA256())
    )
    with open(cert, "wb") as f:
        f.write(c.public_bytes(serialization.Encoding.PEM))
    with open(key, "wb") as f:
        f.write(pk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()))
    return cert, key


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class StandInAPIServer:
    """Holds the stand-in's state; ``start()`` serves it on 127.0.0.1 with TLS."""

    def __init__(self, pod_list: dict[str, Any], owners: dict[str, Any]) -> None:
        self.rv = int(pod_list["metadata"]["resourceVersion"])
        self.pods = {p["metadata"]["uid"]: p for p in copy.deepcopy(pod_list["items"])}
        self.objects = {("replicasets", o["metadata"]["namespace"], o["metadata"]["name"]): o
                        for o in owners.get("replicasets", [])}
        self.objects.update({("jobs", o["metadata"]["namespace"], o["metadata"]["name"]): o
                             for o in owners.get("jobs", [])})
        self.log: list[tuple[int, dict[str, Any]]] = []  # (resourceVersion, event)
        self.compacted = 0  # watches from versions older than this get 410 Gone
        self.generation = 0  # bumped by expire_watches()/drop_watches() to end open watches
        self.drop = False
        self.cond = threading.Condition()
        self.list_calls = self.watch_calls = self.owner_gets = 0
        self.closing = False
        self._httpd: http.server.ThreadingHTTPServer | None = None

    # -- test controls -------------------------------------------------------------------------
    def push(self, event_type: str, pod: dict[str, Any]) -> None:
        """Change state and emit a watch event, as the real server would for a pod change."""
        with self.cond:
            self.rv += 1
            pod = copy.deepcopy(pod)
            pod["metadata"]["resourceVersion"] = str(self.rv)
            if event_type == "DELETED":
                self.pods.pop(pod["metadata"]["uid"], None)
            else:
                self.pods[pod["metadata"]["uid"]] = pod
            self.log.append((self.rv, {"type": event_type, "object": pod}))
            self.cond.notify_all()

    def expire_watches(self) -> None:
        """Compact history: open watches get a 410 ERROR event, older versions are gone."""
        with self.cond:
            self.compacted = self.rv
            self.generation += 1
            self.cond.notify_all()

    def drop_watches(self) -> None:
        """Cut open watch connections mid-stream (no terminating chunk), like a dying LB."""
        with self.cond:
            self.drop = True
            self.generation += 1
            self.cond.notify_all()

    # -- serving -------------------------------------------------------------------------------
    def start(self, cert: str, key: str) -> str:
        """Serve on an ephemeral port; return the https URL."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        handler = type("Handler", (_Handler,), {"state": self})
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: StandInAPIServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._json(401, _status(401, "Unauthorized", "Unauthorized"))
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        if url.path == "/api/v1/pods":
            node = q.get("fieldSelector", "").removeprefix("spec.nodeName=") or None
            return self._watch(q, node) if q.get("watch") in ("true", "1") else self._list(node)
        if len(parts) == 7 and parts[0] == "apis" and parts[3] == "namespaces":
            s = self.state
            with s.cond:
                s.owner_gets += 1
                obj = s.objects.get((parts[5], parts[4], parts[6]))
            if obj is None:
                return self._json(404, _status(404, "NotFound", f'{parts[5]} "{parts[6]}" not found'))
            return self._json(200, obj)
        self._json(404, _status(404, "NotFound", "the server could not find the requested resource"))

    def _list(self, node: str | None) -> None:
        s = self.state
        with s.cond:
            s.list_calls += 1
            items = [p for p in s.pods.values() if node is None or p["spec"].get("nodeName") == node]
            body = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(s.rv)},
                    "items": copy.deepcopy(items)}
        self._json(200, body)

    def _chunk(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, q: dict[str, str], node: str | None) -> None:
        s = self.state
        since = int(q.get("resourceVersion") or 0)
        deadline = float(q.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with s.cond:
            s.watch_calls += 1
            gen = s.generation
            s.drop = False
            if since and since < s.compacted:
                gone = _status(410, "Expired", f"too old resource version: {since} ({s.compacted + 1})")
                self._chunk({"type": "ERROR", "object": gone})
                return self._end()
        end = threading.Event()
        timer = threading.Timer(deadline, lambda: (end.set(), _notify(s)))
        timer.start()
        try:
            while True:
                with s.cond:
                    pending = [e for rv, e in s.log if rv > since]
                    while not pending and not end.is_set() and not s.closing and s.generation == gen:
                        s.cond.wait()
                        pending = [e for rv, e in s.log if rv > since]
                    if s.generation != gen and s.drop:
                        self.connection.shutdown(socket.SHUT_RDWR)  # mid-stream cut, no last chunk
                        return
                    if s.generation != gen:
                        gone = _status(410, "Expired", "too old resource version")
                        self._chunk({"type": "ERROR", "object": gone})
                        return self._end()
                for e in pending:
                    since = int(e["object"]["metadata"]["resourceVersion"])
                    if node is None or e["object"]["spec"].get("nodeName") == node:
                        self._chunk(e)
                if end.is_set() or s.closing:
                    return self._end()
        except OSError:
            return  # client went away
        finally:
            timer.cancel()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True


def _notify(s: StandInAPIServer) -> None:
    with s.cond:
        s.cond.notify_all()


def write_kubeconfig(path: str, server: str, ca_file: str) -> None:
    """A kubeconfig pointing the real client at the stand-in, trusting its certificate."""
    with open(ca_file, "rb") as f:
        import base64

        ca = base64.b64encode(f.read()).decode()
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "standin", "user": {"token": TOKEN}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f)  # JSON is valid YAML
