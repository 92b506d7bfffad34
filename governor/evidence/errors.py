"""Evidence exceptions. Messages name what went wrong and the fix; causes are always chained."""

from __future__ import annotations


class EvidenceError(Exception):
    """Base of every error the evidence package raises on purpose."""


class WindowError(EvidenceError):
    """A --since/--until value is not RFC 3339 or a relative duration, or the window is empty."""


class SourceMissing(EvidenceError):
    """A source (Prometheus, Alertmanager, a file) could not be read; the bundle goes on without it."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class BundleError(EvidenceError):
    """The output location cannot be written (exists and is not empty, not writable)."""


class VerifyError(EvidenceError):
    """A bundle does not match its manifest, or has no readable manifest."""
