"""Credentials a user writes into a URL: masked wherever the URL is shown, moved into a header
where it is used.

`http://user:pw@host`, `https://TOKEN@host` and signed query strings (`?sig=...`) are how
collectors, Prometheus servers and scrape targets are commonly addressed. Shown as they are, they
put the secret into log lines, report headers and evidence manifests that leave the node; handed to
the OTel SDK as they are, they are not understood (`Misformatted domain name`) and appear in the
SDK's own retry lines. So:

- `display_url(url)` gives the URL to show: userinfo and secret query parameters masked with the
  redaction rules of agent/redaction/redact.py (the same rules as the exec log's), anything else unchanged;
- `split_userinfo(url)` gives the URL without userinfo and the `Authorization: Basic` header that
  carries it (RFC 7617; a token alone becomes `TOKEN:`, as curl and git send it), for clients that
  take headers (the OTLP exporters); it refuses to send credentials unencrypted off the node.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field

from agent.redaction.redact import redact_text

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def display_url(url: str) -> str:
    """`url` safe to print: `http://user:***@host`, `https://***@host`, `?sig=***`. Also masks
    such URLs inside a longer message (an error line)."""
    return redact_text(url)


@dataclass(frozen=True)
class Endpoint:
    """A URL without its userinfo (`url`) and the headers that carry it (`headers`, lower-case
    names as gRPC metadata requires; empty when the URL had none)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


class CleartextCredentials(ValueError):
    """The URL carries credentials but would send them unencrypted to another host."""


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# RFC 9110 field-name token; gRPC metadata keys are lower case
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# header names whose values are credentials: never sent unencrypted off the node
_CREDENTIAL_HEADER = re.compile(r"authorization|cookie|key|token|secret|pass|auth|signature|credential", re.I)


def check_headers(headers: object, endpoint: str | None, what: str = "otlp_headers") -> dict[str, str]:
    """`headers` (a config mapping of header name -> value) checked and with lower-case names.
    Raises ValueError naming the header and the fix, never its value: not a mapping, a name that
    is not an HTTP token, a value that is not a one-line string, no endpoint to send them to, or a
    credential header (Authorization, Cookie, *key*, *token* ...) over plain http to a host that
    is not this node's loopback."""
    if not isinstance(headers, dict):
        raise ValueError(f"{what} must be a mapping of header name to value, e.g. {{authorization: 'Bearer ...'}}")
    if headers and not endpoint:
        raise ValueError(f"{what} needs otlp_endpoint (the headers go with its requests)")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(f"{what}: {name!r} is not an HTTP header name (letters, digits, - and _)")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"{what}: the value of {name} must be a one-line string (value not shown)")
        if name.lower() in out:
            raise ValueError(f"{what}: {name} is given twice (header names are case-insensitive)")
        out[name.lower()] = value
    secret = sorted(n for n in out if _CREDENTIAL_HEADER.search(n))
    if secret and endpoint:
        parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
        if parsed.scheme.lower() != "https" and not _is_loopback(parsed.hostname or ""):
            raise CleartextCredentials(
                f"{what}: {', '.join(secret)} would cross the network in clear text to {display_url(endpoint)}; "
                f"use an https:// otlp_endpoint, or a collector on this node (127.0.0.1)")
    return out


def exporter_endpoint(endpoint: str, headers: dict[str, str] | None = None) -> Endpoint:
    """The endpoint's URL without userinfo and every header to send: `headers` (already checked by
    `check_headers`) plus the Authorization its userinfo gives. Raises ValueError when both give
    an Authorization, and CleartextCredentials as `split_userinfo` does."""
    ep = split_userinfo(endpoint)
    extra = {k.lower(): v for k, v in (headers or {}).items()}
    if "authorization" in ep.headers and "authorization" in extra:
        raise ValueError("otlp_endpoint has credentials and otlp_headers an authorization header: keep one")
    return Endpoint(ep.url, {**ep.headers, **extra})


def split_userinfo(url: str, what: str = "otlp_endpoint") -> Endpoint:
    """`url` (with or without a scheme; `host:port` is taken as `http://host:port`) split into a
    clean URL and an `authorization: Basic` header for its userinfo. A URL without userinfo comes
    back unchanged with no headers.

    Raises CleartextCredentials when the userinfo would travel over plain http (or insecure gRPC)
    to a host that is not this node's loopback: secrets never leave the node in clear text; the
    message names `what`, shows the URL masked and says to use https://.
    """
    if "@" not in url:
        return Endpoint(url)
    parsed = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    if parsed.username is None and parsed.password is None:
        return Endpoint(url)
    host = parsed.hostname or ""
    if parsed.scheme.lower() != "https" and not _is_loopback(host):
        raise CleartextCredentials(
            f"{what} {display_url(url)} carries credentials over unencrypted {parsed.scheme}: they would "
            f"cross the network in clear text; use https://, or a collector on this node (127.0.0.1)")
    netloc = parsed.netloc.rpartition("@")[2]
    clean = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, parsed.query, parsed.fragment))
    user = urllib.parse.unquote(parsed.username or "")
    password = urllib.parse.unquote(parsed.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return Endpoint(clean, {"authorization": f"Basic {token}"})
