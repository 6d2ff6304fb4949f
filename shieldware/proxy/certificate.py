"""What an operator needs to know of the certificate the proxy serves: whose it is, its serial and
when it expires, read from the PEM file's first certificate.

The standard library's ssl module loads a certificate for serving but does not say what is in it,
and the project does not need a whole X.509 library for three fields. A certificate is DER
(nested tag-length-value elements), and these fields sit at fixed places in it (RFC 5280, 4.1):

    Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    tbsCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
                                  validity SEQUENCE { notBefore, notAfter }, subject, ... }
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
from dataclasses import dataclass

_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_SEQUENCE, _SET, _INTEGER, _OID = 0x30, 0x31, 0x02, 0x06
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_VERSION_TAG = 0xA0  # [0] EXPLICIT
_COMMON_NAME = bytes((0x55, 0x04, 0x03))  # 2.5.4.3
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


@dataclass(frozen=True)
class CertificateFacts:
    subject: str | None  # the subject's common name, when it has one
    serial: str  # hex, as `openssl x509 -serial` prints it
    not_before: float  # Unix seconds
    not_after: float

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / 86400.0


def certificate_facts(pem_text: str) -> CertificateFacts:
    """The facts of the first certificate in `pem_text`; ValueError when there is none to read."""
    block = _PEM_BLOCK.search(pem_text)
    if block is None:
        raise ValueError("holds no PEM certificate")
    try:
        der = base64.b64decode("".join(block.group(1).split()), validate=True)
    except binascii.Error:
        raise ValueError("its PEM certificate is not base64") from None
    try:
        return _facts(der)
    except (IndexError, ValueError, UnicodeDecodeError):
        raise ValueError("its certificate is not DER that this reader understands") from None


def _facts(der: bytes) -> CertificateFacts:
    certificate = _children(der, *_expect(der, 0, _SEQUENCE))
    tbs = _children(der, certificate[0][1], certificate[0][2])
    if tbs[0][0] == _VERSION_TAG:
        tbs = tbs[1:]
    (serial_tag, serial_start, serial_end), _signature, _issuer, validity, subject = tbs[:5]
    if serial_tag != _INTEGER:
        raise ValueError("no serial number")
    not_before, not_after = _children(der, validity[1], validity[2])[:2]
    serial = der[serial_start:serial_end].lstrip(b"\0") or b"\0"  # a sign byte is not printed
    return CertificateFacts(subject=_common_name(der, subject), serial=serial.hex().upper(),
                            not_before=_time(der, not_before), not_after=_time(der, not_after))


def _expect(der: bytes, at: int, tag: int) -> tuple[int, int]:
    found, start, end = _element(der, at)
    if found != tag:
        raise ValueError(f"tag {found:#x} where {tag:#x} was expected")
    return start, end


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start, end) of the contents of the element that begins at `at`."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:  # long form: the next (length & 0x7f) bytes are the length
        size = length & 0x7F
        if not 1 <= size <= 4:
            raise ValueError("length out of range")
        length = int.from_bytes(der[at:at + size], "big")
        at += size
    if at + length > len(der):
        raise ValueError("truncated")
    return tag, at, at + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    children = []
    while start < end:
        child = _element(der, start)
        children.append(child)
        start = child[2]
    return children


def _common_name(der: bytes, name: tuple[int, int, int]) -> str | None:
    for _, set_start, set_end in _children(der, name[1], name[2]):  # RelativeDistinguishedName SETs
        for _, pair_start, pair_end in _children(der, set_start, set_end):
            (oid_tag, oid_start, oid_end), (value_tag, value_start, value_end) = _children(
                der, pair_start, pair_end)[:2]
            if oid_tag == _OID and der[oid_start:oid_end] == _COMMON_NAME:
                return der[value_start:value_end].decode(_STRING_TAGS.get(value_tag, "latin-1"))
    return None


def _time(der: bytes, element: tuple[int, int, int]) -> float:
    tag, start, end = element
    text = der[start:end].decode("ascii")
    if not text.endswith("Z"):
        raise ValueError("time without Z")
    if tag == _UTC_TIME:  # YYMMDDHHMMSSZ; RFC 5280: YY of 50 or more is 19YY
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME:
        raise ValueError("not a time")
    fields = (int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:14]))
    return float(calendar.timegm((*fields, 0, 0, 0)))
