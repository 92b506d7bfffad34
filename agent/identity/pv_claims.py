"""PersistentVolume name -> the claim bound to it, from the Kubernetes API (a `ClaimLookup`).

The kubelet mounts a PVC-backed volume at `pods/<uid>/volumes/<plugin>/<PV name>`, so a block
device's mount names the PV, not the claim. The PV's `spec.claimRef` names the claim and its
namespace; a binding does not change while the PV exists, so answers are kept (bounded), and
misses (no such PV, an inline volume, the API down) are retried after `miss_ttl` seconds.

Lookups happen at scrape time, once per new device mount, with a short request timeout; when the
API cannot be reached, no PV is asked about until `miss_ttl` has passed, so a scrape waits for at
most one timeout however many volumes are new. Needs
`get` on `persistentvolumes` (deploy/daemonset/rbac.yaml); without it the first 403 is logged
once with the fix and the PVC labels stay "".
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.identity import kube
from agent.identity.errors import KubernetesConfigError

log = logging.getLogger("bcgov.agent.identity.pv_claims")


class PvClaims:
    """Callable (pod uid, PV name) -> (claim, namespace) | None, backed by `read_persistent_volume`."""

    def __init__(
        self,
        core_v1: Any,
        miss_ttl: float = 300.0,
        max_entries: int = 4096,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = core_v1
        self._miss_ttl = miss_ttl
        self._max = max_entries
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._bound: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()
        self._missed: dict[str, float] = {}
        self._forbidden_logged = False
        self._unreachable_since: float | None = None
        self.api_calls = 0

    @classmethod
    def connect(cls, kubeconfig: str | None = None, **kw: Any) -> PvClaims | None:
        """From the same configuration the pod watch uses; None (said once by the pod cache)
        when there is none."""
        try:
            api_client = kube.load_api_client(kubeconfig)
        except KubernetesConfigError:
            return None
        from kubernetes import client

        # a client of its own without urllib3's retries: one refused or timed-out request is one
        # miss, not four times the timeout inside a scrape
        cfg = api_client.configuration
        cfg.retries = False
        return cls(client.CoreV1Api(client.ApiClient(cfg)), **kw)

    def __call__(self, pod_uid: str, pv_name: str) -> tuple[str, str] | None:
        now = self._clock()
        with self._lock:
            if pv_name in self._bound:
                self._bound.move_to_end(pv_name)
                return self._bound[pv_name]
            missed_at = self._missed.get(pv_name)
            if missed_at is not None and now - missed_at < self._miss_ttl:
                return None
            if self._unreachable_since is not None and now - self._unreachable_since < self._miss_ttl:
                return None
        claim, reachable = self._fetch(pv_name)
        with self._lock:
            self._unreachable_since = None if reachable else now
            if claim is None:
                self._missed[pv_name] = now
                if len(self._missed) > self._max:
                    self._missed.pop(next(iter(self._missed)))
            else:
                self._missed.pop(pv_name, None)
                self._bound[pv_name] = claim
                if len(self._bound) > self._max:
                    self._bound.popitem(last=False)
        return claim

    def _fetch(self, pv_name: str) -> tuple[tuple[str, str] | None, bool]:
        """(claim or None, whether the API answered at all)."""
        from kubernetes.client.exceptions import ApiException

        self.api_calls += 1
        try:
            pv = self._core.read_persistent_volume(pv_name, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 403 and not self._forbidden_logged:
                self._forbidden_logged = True
                log.warning("cannot read PersistentVolumes (403): block I/O has no pvc labels; grant the agent's "
                            "ClusterRole get on persistentvolumes (deploy/daemonset/rbac.yaml)")
            elif exc.status not in (403, 404):
                log.debug("PersistentVolume %s: API error %s", pv_name, exc.status)
            return None, True
        except Exception as exc:  # connection refused, timeout: nothing is asked until miss_ttl passed
            log.debug("PersistentVolume %s: %s", pv_name, exc)
            return None, False
        ref = pv.spec.claim_ref if pv.spec is not None else None
        if ref is None or not ref.name:
            return None, True
        return (ref.name, ref.namespace or ""), True
