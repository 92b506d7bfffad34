"""Small helpers shared by the probe decoders: addresses, C strings and layout checks."""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Any

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


_V4_MAPPED = bytes(10) + b"\xff\xff"
_inet_ntop = socket.inet_ntop
# A node talks to few distinct addresses, and formatting one costs far more than a dict lookup
# on the hot path; the cache is bounded (cleared when full) so address scans cannot grow it.
_ADDR_CACHE: dict[tuple[int, bytes], str] = {}
_ADDR_CACHE_MAX = 4096


def ip_from_bytes(family: int, raw: bytes) -> str:
    """Format a tracepoint address array (4 or 16 meaningful bytes) for `family`."""
    key = (family, raw if type(raw) is bytes else bytes(raw))
    text = _ADDR_CACHE.get(key)
    if text is not None:
        return text
    if family == AF_INET:
        text = _inet_ntop(AF_INET, bytes(raw[:4]))
    elif family == AF_INET6:
        b = bytes(raw[:16])
        # v4-mapped addresses are what a dual-stack socket sees for IPv4 peers: show them as IPv4.
        text = _inet_ntop(AF_INET, b[12:16]) if b[:12] == _V4_MAPPED else _inet_ntop(AF_INET6, b)
    else:
        return ""
    if len(_ADDR_CACHE) >= _ADDR_CACHE_MAX:
        _ADDR_CACHE.clear()
    _ADDR_CACHE[key] = text
    return text


def sockaddr_endpoint(raw: bytes) -> tuple[int, str, int]:
    """Decode a raw `struct sockaddr_in`/`sockaddr_in6` buffer into (family, address, port)."""
    family = int.from_bytes(raw[0:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if family == AF_INET:
        return family, ip_from_bytes(family, raw[4:8]), port
    if family == AF_INET6:
        return family, ip_from_bytes(family, raw[8:24]), port
    return family, "", port


_STRUCT_CODES = {
    ctypes.c_uint8: "B", ctypes.c_uint16: "H", ctypes.c_uint32: "I", ctypes.c_uint64: "Q",
    ctypes.c_int8: "b", ctypes.c_int16: "h", ctypes.c_int32: "i", ctypes.c_int64: "q",
}


def _array_of(array: Any) -> tuple[Any, int]:
    """(element type, length) of a ctypes array type (typeshed types `_type_` and `_length_` for
    instances only)."""
    return array._type_, int(array._length_)


def struct_of(mirror: type[ctypes.Structure]) -> struct.Struct:
    """A precompiled `struct.Struct` with the mirror's exact layout (unpacking with it is several
    times cheaper than `from_buffer_copy` plus attribute reads). Arrays of integers unpack as
    consecutive items, char arrays as one bytes item; padding is filled in from the offsets, and
    a layout it cannot express is an error here, at import, not a silent misread."""
    fmt = "<"
    pos = 0
    for name, ctype, *_ in mirror._fields_:
        offset = getattr(mirror, name).offset
        if offset < pos:
            raise LayoutMismatch(f"{mirror.__name__}.{name}: overlapping fields are not supported")
        fmt += "x" * (offset - pos)
        if ctype in _STRUCT_CODES:
            fmt += _STRUCT_CODES[ctype]
        elif issubclass(ctype, ctypes.Array) and (array := _array_of(ctype))[0] is ctypes.c_char:
            fmt += f"{array[1]}s"
        elif issubclass(ctype, ctypes.Array) and array[0] in _STRUCT_CODES:
            item, length = array
            fmt += _STRUCT_CODES[item] * length if item is not ctypes.c_uint8 else f"{length}s"
        else:
            raise LayoutMismatch(f"{mirror.__name__}.{name}: no struct code for {ctype.__name__}")
        pos = offset + ctypes.sizeof(ctype)
    fmt += "x" * (ctypes.sizeof(mirror) - pos)
    compiled = struct.Struct(fmt)
    if compiled.size != ctypes.sizeof(mirror):
        raise LayoutMismatch(f"{mirror.__name__}: struct format {fmt} is {compiled.size} bytes, ctypes says {ctypes.sizeof(mirror)}")
    return compiled


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
