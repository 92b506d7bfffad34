"""One HTTP client for every source: auth, TLS, timeouts, bounded retries, and errors that say
what to do. Network failures become `SourceUnreachable`; bad answers become `SourceError`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from governor import errors

# Bodies larger than this are refused rather than parsed: a /metrics page or API answer this big
# means the bounds (chunking, --max-series) are wrong, and parsing it could exhaust memory.
MAX_BODY_BYTES = 512 * 1024 * 1024
# Answers worth another attempt: rate limited, or a server error that may pass (a 500 from an
# exporter is often one failed collection; treated like 503, not as a wrong URL).
_RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclasses.dataclass(frozen=True)
class HttpOptions:
    """How to talk to a source. `retries` counts extra attempts after the first."""

    timeout: float = 10.0
    retries: int = 2
    backoff: float = 0.5
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    headers: tuple[tuple[str, str], ...] = ()  # e.g. ("X-Scope-OrgID", "tenant") for Mimir

    def __repr__(self) -> str:  # never print credentials
        return f"HttpOptions(timeout={self.timeout}, retries={self.retries}, auth={'yes' if self.bearer_token or self.basic_auth else 'no'})"


class Http:
    """A small wrapper over a `requests.Session`; `what` names the source in error messages and
    `hint` is the fix appended to an unreachable error."""

    def __init__(
        self,
        options: HttpOptions,
        what: str,
        hint: str,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options
        self.what = what
        self.hint = hint
        self._sleep = sleep
        self._session = session or requests.Session()
        if options.bearer_token:
            self._session.headers["Authorization"] = f"Bearer {options.bearer_token}"
        if options.basic_auth:
            self._session.auth = options.basic_auth
        for k, v in options.headers:
            self._session.headers[k] = v
        self._session.verify = False if options.insecure_skip_verify else (options.ca_file or True)

    def close(self) -> None:
        self._session.close()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with retries on connection errors, timeouts and 429/5xx; raise our errors."""
        attempts = self.options.retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                resp = self._session.request(method, url, timeout=self.options.timeout, **kwargs)
            except requests.exceptions.SSLError as exc:
                raise errors.SourceUnreachable(
                    f"cannot reach {self.what} at {url}: TLS failed ({errors.bounded(exc, 120)}); "
                    "pass --ca-file or --insecure-skip-verify"
                ) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last:
                    raise errors.SourceUnreachable(
                        f"cannot reach {self.what} at {url}: {_cause(exc)}; {self.hint}"
                    ) from exc
                self._sleep(self.options.backoff * 2**attempt)
                continue
            except requests.exceptions.InvalidSchema as exc:
                if urlsplit(url).scheme in ("http", "https"):  # a redirect left http(s): name the target
                    raise errors.SourceError(
                        f"{self.what} at {url} redirected to a URL that is not http(s) ({errors.bounded(exc, 120)}); "
                        "pass the final http(s) URL"
                    ) from exc
                raise  # the URL given is not http(s): send() says so
            except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema):
                raise  # send() turns these into a usage error
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
                # the body ended before its Content-Length or chunked end, or did not decompress:
                # often a connection cut mid-answer, so it is retried like one
                if last:
                    raise errors.SourceUnreachable(
                        f"cannot read {self.what} at {url}: the answer was cut short or corrupt "
                        f"({errors.bounded(exc, 120)}); {self.hint}"
                    ) from exc
                self._sleep(self.options.backoff * 2**attempt)
                continue
            except requests.RequestException as exc:  # anything else requests can raise: one line, no traceback
                raise errors.SourceError(
                    f"cannot read {self.what} at {url}: {type(exc).__name__} ({errors.bounded(exc, 120)}); {self.hint}"
                ) from exc
            if resp.status_code in _RETRY_STATUS and not last:
                self._sleep(self.options.backoff * 2**attempt)
                continue
            if resp.status_code in (401, 403):
                raise errors.SourceError(
                    f"{self.what} at {url} refused access (HTTP {resp.status_code}); "
                    "pass --bearer-token-file or --basic-auth-user/--basic-auth-password-file"
                )
            if len(resp.content) > MAX_BODY_BYTES:
                raise errors.InventoryTooLarge(f"{self.what} answered {len(resp.content)} bytes from {url}; narrow the query")
            return resp
        raise AssertionError("unreachable")  # the loop always returns or raises

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """`request`, with a URL requests cannot use turned into a usage error."""
        try:
            return self.request(method, url, **kwargs)
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema) as exc:
            raise errors.UsageError(f"{url!r} is not a usable URL ({errors.bounded(exc, 120)}); pass an http(s) URL") from exc


def status_problem(what: str, status: int, retries: int) -> str:
    """One line for an HTTP status that is not 200: what it means and what to do."""
    tried = f" (tried {retries + 1} times)" if retries else ""
    if status in (404, 410):
        return f"{what} answered HTTP {status} (not found); check the URL path (usually /metrics)"
    if status == 429:
        return f"{what} answered HTTP 429 (rate limited){tried}; retry later or raise --retries"
    if status in (502, 503, 504):
        return (f"{what} answered HTTP {status} (unavailable or a proxy could not reach it){tried}; "
                "check that the exporter is up and healthy, then retry")
    if 500 <= status < 600:
        return f"{what} answered HTTP {status} (the exporter failed while collecting){tried}; check the exporter's own logs"
    if status in (301, 302, 303, 307, 308):
        return f"{what} answered a redirect (HTTP {status}) that was not followed; pass the final URL"
    return f"{what} answered HTTP {status}; check the URL and the exporter"


def _cause(exc: Exception) -> str:
    """A short human cause for a requests network error."""
    text = str(exc)
    if isinstance(exc, requests.Timeout):
        return "timed out"
    for needle, cause in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host name not found"),
        ("No route to host", "no route to host"),
        ("Connection reset", "connection reset"),
    ):
        if needle in text:
            return cause
    return errors.bounded(text, 120)
