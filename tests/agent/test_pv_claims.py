"""PV name -> claim through the real `kubernetes` client, against a STAND-IN kube-apiserver (no
real API server can run here) serving `GET /api/v1/persistentvolumes/NAME` in the real wire
format: PersistentVolume JSON as the API returns it, Status objects for 403 and 404."""

from __future__ import annotations

import copy
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.identity.block_devices import BlockDeviceResolver
from agent.identity.pv_claims import PvClaims

TOKEN = "pv-stand-in-token"
POD = "0f3c2a1e-7d7b-4c5e-9a51-2f6f0c1d9e42"
BOUND = "pvc-5b8e7f0e-3c2d-4b1a-8f9e-1a2b3c4d5e6f"
AVAILABLE = "local-pv-7c1d"
FORBIDDEN = "pvc-forbidden"

# As `kubectl get pv -o json` shows a Longhorn-provisioned volume bound to a StatefulSet's claim.
BOUND_PV: dict[str, Any] = {
    "apiVersion": "v1", "kind": "PersistentVolume",
    "metadata": {
        "name": BOUND, "uid": "9d3e1c2b-0a4f-4e8d-b7c6-5a4b3c2d1e0f", "resourceVersion": "48213",
        "creationTimestamp": "2026-11-01T09:12:44Z",
        "annotations": {"pv.kubernetes.io/provisioned-by": "driver.longhorn.io"},
        "finalizers": ["kubernetes.io/pv-protection", "external-attacher/driver-longhorn-io"],
    },
    "spec": {
        "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "20Gi"},
        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data-postgres-0",
                     "namespace": "oltp", "resourceVersion": "48190", "uid": "5b8e7f0e-3c2d-4b1a-8f9e-1a2b3c4d5e6f"},
        "csi": {"driver": "driver.longhorn.io", "fsType": "ext4", "volumeHandle": BOUND,
                "volumeAttributes": {"numberOfReplicas": "1", "storage.kubernetes.io/csiProvisionerIdentity": "1730452000-driver.longhorn.io"}},
        "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "longhorn", "volumeMode": "Filesystem",
    },
    "status": {"phase": "Bound", "lastPhaseTransitionTime": "2026-11-01T09:12:44Z"},
}
AVAILABLE_PV: dict[str, Any] = {
    "apiVersion": "v1", "kind": "PersistentVolume",
    "metadata": {"name": AVAILABLE, "uid": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "resourceVersion": "50001",
                 "creationTimestamp": "2026-11-02T10:00:00Z"},
    "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "100Gi"}, "local": {"path": "/mnt/disks/ssd1"},
             "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                 {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]}]}]}},
             "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local-storage", "volumeMode": "Filesystem"},
    "status": {"phase": "Available"},
}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class _PvStandIn(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pvs: dict[str, dict[str, Any]] = {}
    gets: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
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
        prefix = "/api/v1/persistentvolumes/"
        if not self.path.startswith(prefix):
            return self._json(404, _status(404, "NotFound", "the server could not find the requested resource"))
        name = self.path[len(prefix):].split("?")[0]
        self.gets.append(name)
        if name == FORBIDDEN:
            return self._json(403, _status(403, "Forbidden", f'persistentvolumes "{name}" is forbidden: User '
                                           '"system:serviceaccount:bcgov-system:bcgov-agent" cannot get resource '
                                           '"persistentvolumes" in API group "" at the cluster scope'))
        pv = self.pvs.get(name)
        if pv is None:
            return self._json(404, _status(404, "NotFound", f'persistentvolumes "{name}" not found'))
        return self._json(200, pv)


class StandIn:
    """The stand-in server; `stop()` and `start()` take the API away and bring it back on the same port."""

    def __init__(self) -> None:
        self.handler = type("Handler", (_PvStandIn,), {
            "pvs": {BOUND: copy.deepcopy(BOUND_PV), AVAILABLE: copy.deepcopy(AVAILABLE_PV)}, "gets": []})
        self.port = 0
        self.httpd: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[tuple[StandIn, str]]:
    """The stand-in on an ephemeral port and a kubeconfig pointing the real client at it."""
    server = StandIn()
    server.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({  # JSON is valid YAML
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": f"http://127.0.0.1:{server.port}"}}],
        "users": [{"name": "standin", "user": {"token": TOKEN}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
    }))
    try:
        yield server, str(kubeconfig)
    finally:
        server.stop()


def test_a_bound_pv_names_its_claim_once_then_from_memory(standin) -> None:
    server, kubeconfig = standin
    claims = PvClaims.connect(kubeconfig)
    assert claims is not None
    assert claims(POD, BOUND) == ("data-postgres-0", "oltp")
    assert claims(POD, BOUND) == ("data-postgres-0", "oltp")
    assert server.handler.gets == [BOUND]  # a binding does not change: asked once


def test_misses_are_remembered_for_their_ttl(standin) -> None:
    server, kubeconfig = standin
    now = [0.0]
    claims = PvClaims.connect(kubeconfig, miss_ttl=60.0, clock=lambda: now[0])
    assert claims is not None
    assert claims(POD, "pvc-gone") is None      # 404
    assert claims(POD, AVAILABLE) is None       # exists, bound to nothing
    now[0] = 59.0
    assert claims(POD, "pvc-gone") is None and claims(POD, AVAILABLE) is None
    assert server.handler.gets == ["pvc-gone", AVAILABLE]
    server.handler.pvs["pvc-gone"] = dict(copy.deepcopy(BOUND_PV), metadata={"name": "pvc-gone"})  # provisioned since
    now[0] = 61.0
    assert claims(POD, "pvc-gone") == ("data-postgres-0", "oltp")
    assert server.handler.gets == ["pvc-gone", AVAILABLE, "pvc-gone"]


def test_forbidden_says_once_which_permission_is_missing(standin, caplog: pytest.LogCaptureFixture) -> None:
    _, kubeconfig = standin
    claims = PvClaims.connect(kubeconfig, miss_ttl=0.0)
    assert claims is not None
    with caplog.at_level(logging.WARNING, logger="bcgov.agent.identity.pv_claims"):
        assert claims(POD, FORBIDDEN) is None
        assert claims(POD, FORBIDDEN) is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert "403" in line and "persistentvolumes" in line and "rbac.yaml" in line


def test_an_unreachable_api_is_a_miss_and_is_not_asked_again_until_the_ttl(standin) -> None:
    server, kubeconfig = standin
    now = [0.0]
    claims = PvClaims.connect(kubeconfig, timeout=2.0, miss_ttl=60.0, clock=lambda: now[0])
    assert claims is not None
    server.stop()  # connection refused from now on
    assert claims(POD, BOUND) is None
    assert claims(POD, AVAILABLE) is None and claims(POD, "pvc-other") is None
    assert claims.api_calls == 1  # one scrape waits for one failed request, not one per volume
    server.start()  # back, same port
    now[0] = 61.0
    assert claims(POD, BOUND) == ("data-postgres-0", "oltp")
    assert server.handler.gets == [BOUND]


def test_no_kubernetes_configuration_means_no_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    assert PvClaims.connect(None) is None


def test_a_pod_volume_on_a_device_gets_its_pvc_labels(standin, tmp_path: Path) -> None:
    _, kubeconfig = standin
    disk = tmp_path / "sys/dev/block/254:16"
    disk.mkdir(parents=True)
    (disk / "uevent").write_text("MAJOR=254\nMINOR=16\nDEVNAME=vdb\nDEVTYPE=disk\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        f"530 28 254:16 / /var/lib/kubelet/pods/{POD}/volumes/kubernetes.io~csi/{BOUND}/mount rw,relatime "
        "shared:300 - ext4 /dev/vdb rw\n"
    )
    resolver = BlockDeviceResolver(sys_root=tmp_path / "sys", mountinfo_paths=[mountinfo], claims=PvClaims.connect(kubeconfig))
    dev = resolver.describe(254, 16)
    assert (dev.device, dev.pvc, dev.pvc_namespace) == ("vdb", "data-postgres-0", "oltp")
    assert dev.mount == f"/var/lib/kubelet/pods/{POD}/volumes/kubernetes.io~csi/{BOUND}/mount"
