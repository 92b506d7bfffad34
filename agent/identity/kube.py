"""The Kubernetes API side of the pod cache: client configuration and the list/watch loop.

Kept apart from ``pods`` so the cache's bookkeeping can be read (and tested) without the client.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from agent.identity.errors import KubernetesConfigError

if TYPE_CHECKING:
    from agent.identity.owners import OwnerResolver
    from agent.identity.pods import PodCache

log = logging.getLogger(__name__)

IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """Build a ``kubernetes.client.ApiClient`` from, in order: the given kubeconfig, in-cluster
    service-account config, ``$KUBECONFIG`` / ``~/.kube/config``.

    The global default client configuration is never touched. Raises KubernetesConfigError.
    """
    from kubernetes import client, config  # heavy import: only when Kubernetes is actually used

    cfg = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(kubeconfig, context, client_configuration=cfg, persist_config=False)
        elif os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(IN_CLUSTER_TOKEN):
            config.load_incluster_config(client_configuration=cfg)
        else:
            default = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser(
                "~/.kube/config"
            )
            if not os.path.exists(default):
                raise KubernetesConfigError(
                    "not in a cluster and no kubeconfig; set KUBECONFIG or pass --kubeconfig"
                )
            config.load_kube_config(default, context, client_configuration=cfg, persist_config=False)
    except config.ConfigException as e:
        raise KubernetesConfigError(f"unusable Kubernetes config: {str(e)[:200]}") from e
    return client.ApiClient(cfg)


def owner_apis(api_client: Any) -> tuple[Any, Any]:
    """The (AppsV1Api, BatchV1Api) pair the owner resolver reads ReplicaSets and Jobs with."""
    from kubernetes import client

    return client.AppsV1Api(api_client), client.BatchV1Api(api_client)


class PodWatcher:
    """Lists and watches the pods of one node through the real ``kubernetes`` client."""

    def __init__(self, api_client: Any, node_name: str, watch_timeout: int, owners: OwnerResolver):
        from kubernetes import client

        self._core = client.CoreV1Api(api_client)
        self._selector = f"spec.nodeName={node_name}"
        self._watch_timeout = watch_timeout
        self._owners = owners
        self._watch: Any = None

    def list(self) -> tuple[list[Any], str | None]:
        """List this node's pods; returns (PodInfo list, resourceVersion)."""
        from agent.identity.pods import pod_info_from_api

        resp = self._core.list_pod_for_all_namespaces(field_selector=self._selector, _request_timeout=30)
        version = resp.metadata.resource_version if resp.metadata is not None else None
        return [pod_info_from_api(p, self._owners) for p in resp.items], version

    def watch(self, resource_version: str | None, cache: PodCache, stopping: threading.Event) -> str | None:
        """Apply watch events to the cache until the server ends the watch; return the last
        resourceVersion. Raises ApiException (410 included) or a connection error."""
        from kubernetes import watch

        from agent.identity.pods import pod_info_from_api

        w = watch.Watch()
        self._watch = w
        stream = w.stream(
            self._core.list_pod_for_all_namespaces,
            field_selector=self._selector,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            # Setting timeout_seconds also turns off the client's silent retry after a 410, so the
            # 410 reaches us and we relist instead of resuming from a stale version.
            timeout_seconds=self._watch_timeout,
            _request_timeout=(10, self._watch_timeout + 30),
        )
        for event in stream:
            if stopping.is_set():
                w.stop()
                break
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                cache.apply(event["type"], pod_info_from_api(event["object"], self._owners))
                cache.stats["events"] += 1
            cache.expire()
        return w.resource_version or resource_version

    def interrupt(self) -> None:
        """Unblock a watch read from another thread."""
        if self._watch is not None:
            self._watch.stop()


def run_informer(
    watcher: PodWatcher,
    cache: PodCache,
    stopping: threading.Event,
    backoff: tuple[float, float],
    stats: collections.Counter[str],
) -> None:
    """List, then watch; relist after a 410 or an error, resume the watch after a clean end."""
    from kubernetes.client.rest import ApiException

    delay, max_delay = backoff
    rv: str | None = None
    while not stopping.is_set():
        try:
            if rv is None:
                pods, rv = watcher.list()
                cache.replace(pods)
                stats["lists"] += 1
            rv = watcher.watch(rv, cache, stopping)
            stats["watches"] += 1
            delay = backoff[0]
            cache.expire()
            continue
        except ApiException as e:
            if e.status == 410:
                stats["relists_after_gone"] += 1
                rv = None
                continue  # expected after compaction: relist at once, no backoff
            stats["api_errors"] += 1
            log.warning("pod watch failed with HTTP %s; relisting in %.1fs", e.status, delay)
        except Exception as e:  # dropped connection, timeouts, bad data: relist after a pause
            if stopping.is_set():
                break
            stats["watch_errors"] += 1
            log.warning("pod watch dropped (%s: %.200s); relisting in %.1fs", type(e).__name__, e, delay)
        rv = None
        stopping.wait(delay)
        delay = min(delay * 2, max_delay)
