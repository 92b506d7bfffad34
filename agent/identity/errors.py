"""Exceptions raised at the identity boundary. Causes are always chained (``raise ... from e``)."""

from __future__ import annotations


class IdentityError(Exception):
    """Base class for identity-layer failures."""


class CgroupRootError(IdentityError):
    """The cgroup2 file system cannot be found or read."""


class IdentityConfigError(IdentityError):
    """Identity configuration (tier mappings, ports) is invalid; the message names the bad entry."""


class KubernetesConfigError(IdentityError):
    """No usable Kubernetes client configuration (neither in-cluster nor kubeconfig)."""
