"""The client's TLS stack, read from its ClientHello when `shieldware proxy` serves https itself.

A bot that copies a browser's User-Agent and headers still makes its TLS handshake with the
library it is written with (OpenSSL, Go, Java, rustls), and no header can hide that. Browsers'
ClientHellos carry marks of the TLS code they are built on, and those marks are stable across
versions and settings:

- **blink** (Chrome, Edge, Opera, Brave...: BoringSSL): GREASE values, and the
  application_settings extension (ALPS) or brotli certificate compression.
- **webkit** (Safari, and every browser on iOS): GREASE, neither of the two above.
- **gecko** (Firefox, Tor Browser: NSS): no GREASE, and the record_size_limit extension.
- **library**: none of these marks. HTTP libraries and command-line tools.

This is shieldware's own reading, not JA3 or JA4: a stack and the traits it was told by, written
as `swtls/<stack> <trait>,<trait>...` (e.g. `swtls/blink grease,alps,cert-brotli,h2`). The proxy
passes it to the engine as the `x-shieldware-tls` request header (taking out any copy a client
sent), so it is part of a request's shape and its decision; the header signal compares it with the
browser the User-Agent claims (`tls.mismatch`). A trusted edge's value (the policy's
`tls_fingerprint_header`) is read here too when it is nginx's `$ssl_ciphers` (GREASE or not: a
coarser reading), and looked up in the shipped catalogue when it is a JA3/JA4.

The parser reads only what it needs, never raises on client bytes, and gives up (None) on
anything that is not a whole ClientHello: the handshake then goes on, or fails, as it would have.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

HEADER = "x-shieldware-tls"
HEADER_BYTES = HEADER.encode()
PREFIX = "swtls/"
STACKS = ("blink", "webkit", "gecko", "library")

MAX_HELLO_BYTES = 64 * 1024  # a ClientHello is a few hundred bytes to a few KB (post-quantum key shares)

_HANDSHAKE_RECORD = 22
_CLIENT_HELLO = 1
_ALPN = 16
_COMPRESS_CERTIFICATE = 27
_RECORD_SIZE_LIMIT = 28
_ALPS = frozenset((17513, 17613))  # application_settings, old and new code point
_BROTLI = 2


def is_grease(value: int) -> bool:
    """RFC 8701's reserved values: 0x0a0a, 0x1a1a ... 0xfafa."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


class Hello(NamedTuple):
    """What a ClientHello says of the stack that wrote it."""

    stack: str
    traits: tuple[str, ...]

    def header_value(self) -> str:
        return f"{PREFIX}{self.stack} {','.join(self.traits) or '-'}"


_GREASE = frozenset(value for value in range(0x0A0A, 0x10000, 0x1010) if is_grease(value))


def _u16(data: bytes, at: int) -> int:
    return (data[at] << 8) | data[at + 1]


def bytes_wanted(data: bytes) -> int:
    """The length `data` must reach before it next ends on a TLS record's boundary: its own length
    when it does now (the time to read it), else the end of the record still arriving, or of the
    next record's header. A reader that parses only then parses each record once, however the
    bytes trickle in."""
    offset = 0
    while offset + 5 <= len(data):
        end = offset + 5 + _u16(data, offset + 3)
        if end > len(data):
            return end
        offset = end
    return offset if offset == len(data) else offset + 5


def _handshake_message(data: bytes) -> bytes | None:
    """The first handshake message's body, from the records it arrived in; None if incomplete or not TLS."""
    if len(data) < 9 or data[0] != _HANDSHAKE_RECORD:
        return None
    first = _u16(data, 3)
    if data[5] == _CLIENT_HELLO and 4 + int.from_bytes(data[6:9], "big") <= first <= len(data) - 5:
        return data[9:9 + int.from_bytes(data[6:9], "big")]  # the usual case: one record holds it
    payload = bytearray()
    offset = 0
    while offset + 5 <= len(data):
        if data[offset] != _HANDSHAKE_RECORD or data[offset + 1] != 3:
            return None
        length = _u16(data, offset + 3)
        if offset + 5 + length > len(data):
            return None
        payload += data[offset + 5:offset + 5 + length]
        offset += 5 + length
        if len(payload) >= 4:
            if payload[0] != _CLIENT_HELLO:
                return None
            needed = 4 + int.from_bytes(payload[1:4], "big")
            if len(payload) >= needed:
                return bytes(payload[4:needed])
    return None


class HelloParts(NamedTuple):
    """A ClientHello's fields this module and scripts/tls_fingerprint.py read, GREASE values kept."""

    version: int  # the legacy version field
    ciphers: tuple[int, ...]
    extensions: dict[int, bytes]  # type → body, in the order sent


def _parts(body: bytes) -> HelloParts | None:
    # version (2), random (32), session id, cipher suites, compression methods, then extensions
    at = 34
    if at >= len(body):
        return None
    at += 1 + body[at]
    if at + 2 > len(body):
        return None
    ciphers_length = _u16(body, at)
    if at + 2 + ciphers_length > len(body):
        return None
    ciphers = struct.unpack_from(f">{ciphers_length // 2}H", body, at + 2)
    at += 2 + ciphers_length
    if at >= len(body):
        return None
    at += 1 + body[at]
    if at + 2 > len(body):
        return None
    end = at + 2 + _u16(body, at)
    if end > len(body):
        return None
    at += 2
    extensions = {}
    while at + 4 <= end:
        length = _u16(body, at + 2)
        extensions[_u16(body, at)] = body[at + 4:at + 4 + length]
        at += 4 + length
    return HelloParts(_u16(body, 0), ciphers, extensions)


def hello_parts(data: bytes) -> HelloParts | None:
    """The fields of the ClientHello at the start of `data` (one or more TLS records); None while
    it is incomplete, or when `data` does not start with one."""
    body = _handshake_message(data)
    return None if body is None else _parts(body)


def alpn_names(data: bytes) -> list[bytes]:
    """The protocol names of an ALPN extension's body."""
    names, at = [], 2
    while at < len(data):
        length = data[at]
        names.append(data[at + 1:at + 1 + length])
        at += 1 + length
    return names


def read_hello(data: bytes) -> Hello | None:
    """The stack behind the ClientHello at the start of `data`; None while it is incomplete, or
    when `data` does not start with one."""
    parts = hello_parts(data)
    if parts is None:
        return None
    _, ciphers, extensions = parts
    grease = not (_GREASE.isdisjoint(extensions) and _GREASE.isdisjoint(ciphers))
    traits = ["grease"] if grease else []
    alps = not _ALPS.isdisjoint(extensions)
    if alps:
        traits.append("alps")
    compression = extensions.get(_COMPRESS_CERTIFICATE)
    brotli = bool(compression) and _BROTLI in compression[1:]  # a length byte, then two per algorithm
    if compression is not None:
        traits.append("cert-brotli" if brotli else "cert-compress")
    record_size_limit = _RECORD_SIZE_LIMIT in extensions
    if record_size_limit:
        traits.append("record-size-limit")
    alpn = extensions.get(_ALPN)
    if alpn:
        traits.append("h2" if b"h2" in alpn_names(alpn) else "http1")
    return Hello(_stack(grease, alps or brotli, record_size_limit), tuple(traits))


def _stack(grease: bool, chromium_marks: bool, record_size_limit: bool) -> str:
    if grease:
        return "blink" if chromium_marks else "webkit"
    return "gecko" if record_size_limit else "library"


def stack_of(value: str) -> str | None:
    """The stack a trusted TLS value names: an `x-shieldware-tls` value's, or from nginx's
    `$ssl_ciphers` (the client's offered cipher suites, unknown ones in hex) whether it carries
    GREASE: `grease` (Chromium or Safari) or `no-grease` (Firefox or a library). None for any
    other value (an edge's JA3/JA4, looked up in the catalogue instead)."""
    if value.startswith(PREFIX):
        stack = value[len(PREFIX):].split(" ", 1)[0]
        return stack if stack in STACKS else None
    if ":" not in value or not _CIPHER_LIST.fullmatch(value):
        return None
    return "grease" if any(is_grease(int(code, 16)) for code in _HEX_CIPHER.findall(value)) else "no-grease"


# Which stacks each browser engine's TLS can read as. A webkit-looking hello (GREASE without
# Chromium's marks) is let pass a Chromium UA: Chrome on iOS is WebKit underneath, and Chrome
# before 83 had neither mark. Engines not here (Trident, EdgeHTML: Windows' own TLS, with no mark)
# are not judged.
STACKS_OF_ENGINE = {
    "blink": frozenset(("blink", "webkit", "grease")),
    "webkit": frozenset(("webkit", "grease")),
    "gecko": frozenset(("gecko", "no-grease")),
}

_CIPHER_LIST = re.compile(r"[A-Za-z0-9_-]+(?::[A-Za-z0-9_-]+)*")
_HEX_CIPHER = re.compile(r"(?:^|:)0x([0-9A-Fa-f]{4})(?=:|$)")
