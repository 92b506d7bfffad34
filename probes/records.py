"""Small helpers shared by the probe decoders: addresses, C strings and layout checks."""

from __future__ import annotations

import ctypes
import ipaddress
import socket

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6


class LayoutMismatch(Exception):
    """The ctypes mirror of a record disagrees with the C struct BCC compiled."""


def c_string(raw: bytes) -> str:
    """Decode a NUL-terminated C char array; undecodable bytes are replaced, never raised."""
    end = raw.find(b"\0")
    if end >= 0:
        raw = raw[:end]
    return raw.decode("utf-8", "replace")


def ip_from_bytes(family: int, raw: bytes) -> str:
    """Format a tracepoint address array (4 or 16 meaningful bytes) for `family`."""
    if family == AF_INET:
        return str(ipaddress.IPv4Address(bytes(raw[:4])))
    if family == AF_INET6:
        addr = ipaddress.IPv6Address(bytes(raw[:16]))
        # v4-mapped addresses are what a dual-stack socket sees for IPv4 peers: show them as IPv4.
        return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)
    return ""


def sockaddr_endpoint(raw: bytes) -> tuple[int, str, int]:
    """Decode a raw `struct sockaddr_in`/`sockaddr_in6` buffer into (family, address, port)."""
    family = int.from_bytes(raw[0:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if family == AF_INET:
        return family, ip_from_bytes(family, raw[4:8]), port
    if family == AF_INET6:
        return family, ip_from_bytes(family, raw[8:24]), port
    return family, "", port


def check_layout(mirror: type[ctypes.Structure], compiled: type[ctypes.Structure]) -> None:
    """Fail at load time, not at decode time, when the two layouts differ in size or offsets."""
    if ctypes.sizeof(mirror) != ctypes.sizeof(compiled):
        raise LayoutMismatch(
            f"{mirror.__name__} is {ctypes.sizeof(mirror)} bytes but the BPF program's struct is "
            f"{ctypes.sizeof(compiled)}: update the ctypes mirror to match the C source"
        )
    compiled_fields = {name: getattr(compiled, name).offset for name, *_ in compiled._fields_}
    for name, *_ in mirror._fields_:
        if name.startswith("_"):
            continue
        want = getattr(mirror, name).offset
        got = compiled_fields.get(name)
        if got != want:
            raise LayoutMismatch(
                f"{mirror.__name__}.{name} is at offset {want} but the BPF program has it at {got}: "
                "update the ctypes mirror to match the C source"
            )
