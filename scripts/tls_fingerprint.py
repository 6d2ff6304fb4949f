"""JA3 and JA4 (TLS client) fingerprints of a ClientHello, from a curl-impersonate signature or raw bytes.

Both methods are openly specified (JA3: Salesforce, BSD-3-Clause; JA4 TLS client: FoxIO,
BSD-3-Clause). Used only by scripts/build_fingerprints.py to produce fingerprints/tls-fingerprints.json.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from shieldware.tls_hello import alpn_names, hello_parts

EXTENSION_IDS = {
    "server_name": 0x0000,
    "status_request": 0x0005,
    "supported_groups": 0x000A,
    "ec_point_formats": 0x000B,
    "signature_algorithms": 0x000D,
    "application_layer_protocol_negotiation": 0x0010,
    "signed_certificate_timestamp": 0x0012,
    "padding": 0x0015,
    "extended_master_secret": 0x0017,
    "compress_certificate": 0x001B,
    "record_size_limit": 0x001C,
    "delegated_credentials": 0x0022,
    "session_ticket": 0x0023,
    "pre_shared_key": 0x0029,
    "supported_versions": 0x002B,
    "psk_key_exchange_modes": 0x002D,
    "keyshare": 0x0033,
    "application_settings": 0x4469,
    "renegotiation_info": 0xFF01,
}
VERSION_NAMES = {
    "TLS_VERSION_1_3": 0x0304,
    "TLS_VERSION_1_2": 0x0303,
    "TLS_VERSION_1_1": 0x0302,
    "TLS_VERSION_1_0": 0x0301,
}
JA4_VERSION = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}


def is_grease(value: object) -> bool:
    return value == "GREASE" or (isinstance(value, int) and value & 0x0F0F == 0x0A0A)


@dataclass
class ClientHello:
    """The ClientHello fields both fingerprints use, GREASE values already removed."""

    legacy_version: int
    ciphers: list[int] = field(default_factory=list)
    extensions: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    point_formats: list[int] = field(default_factory=list)
    signature_algorithms: list[int] = field(default_factory=list)
    alpn: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)


def hello_from_signature(description: dict) -> ClientHello:
    """From curl-impersonate's YAML description of a browser's ClientHello."""
    extensions = [e for e in description["extensions"] if e["type"] != "GREASE"]
    by_type = {e["type"]: e for e in extensions}

    def values(ext: str, key: str) -> list:
        return [v for v in by_type.get(ext, {}).get(key, []) if not is_grease(v)]

    return ClientHello(
        legacy_version=VERSION_NAMES[description["handshake_version"]],
        ciphers=[c for c in description["ciphersuites"] if not is_grease(c)],
        extensions=[EXTENSION_IDS[e["type"]] for e in extensions],
        groups=values("supported_groups", "supported_groups"),
        point_formats=values("ec_point_formats", "ec_point_formats"),
        signature_algorithms=values("signature_algorithms", "sig_hash_algs"),
        alpn=list(by_type.get("application_layer_protocol_negotiation", {}).get("alpn_list", [])),
        versions=[VERSION_NAMES[v] for v in values("supported_versions", "supported_versions")],
    )


def _u16_list(blob: bytes) -> list[int]:
    return [v for (v,) in struct.iter_unpack("!H", blob[: len(blob) // 2 * 2])]


def hello_from_record(record: bytes) -> ClientHello:
    """From the raw bytes of the TLS record(s) carrying a ClientHello (as read off the wire)."""
    parts = hello_parts(record)
    if parts is None:
        raise ValueError("not a whole ClientHello in a TLS handshake record")
    hello = ClientHello(legacy_version=parts.version, ciphers=[c for c in parts.ciphers if not is_grease(c)])
    for ext_type, data in parts.extensions.items():
        if is_grease(ext_type):
            continue
        hello.extensions.append(ext_type)
        if ext_type == 0x000A:
            hello.groups = [g for g in _u16_list(data[2:]) if not is_grease(g)]
        elif ext_type == 0x000B:
            hello.point_formats = list(data[1 : 1 + data[0]]) if data else []
        elif ext_type == 0x000D:
            hello.signature_algorithms = _u16_list(data[2:])
        elif ext_type == 0x0010:
            hello.alpn = [name.decode("ascii", "replace") for name in alpn_names(data)]
        elif ext_type == 0x002B:
            hello.versions = [v for v in _u16_list(data[1:]) if not is_grease(v)]
    return hello


def ja3(hello: ClientHello) -> str:
    text = ",".join(
        [
            str(hello.legacy_version),
            "-".join(map(str, hello.ciphers)),
            "-".join(map(str, hello.extensions)),
            "-".join(map(str, hello.groups)),
            "-".join(map(str, hello.point_formats)),
        ]
    )
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def ja4(hello: ClientHello) -> str:
    version = JA4_VERSION.get(max(hello.versions) if hello.versions else hello.legacy_version, "00")
    sni = "d" if 0x0000 in hello.extensions else "i"
    alpn = (hello.alpn[0][0] + hello.alpn[0][-1]) if hello.alpn and hello.alpn[0] else "00"
    part_a = f"t{version}{sni}{min(len(hello.ciphers), 99):02d}{min(len(hello.extensions), 99):02d}{alpn}"
    part_b = hashlib.sha256(",".join(sorted(f"{c:04x}" for c in hello.ciphers)).encode()).hexdigest()[:12]
    extensions = ",".join(sorted(f"{e:04x}" for e in hello.extensions if e not in (0x0000, 0x0010)))
    if hello.signature_algorithms:
        extensions += "_" + ",".join(f"{s:04x}" for s in hello.signature_algorithms)
    part_c = hashlib.sha256(extensions.encode()).hexdigest()[:12]
    return f"{part_a}_{part_b}_{part_c}"


def capture_client_hello(connect: Callable[[int], None], timeout: float = 10.0) -> bytes:
    """Run `connect(port)` against a loopback listener and return the first TLS record it sends.

    The listener closes the connection right after reading, so the client's handshake fails;
    only the ClientHello is wanted.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(timeout)
    port = listener.getsockname()[1]
    captured: list[bytes] = []

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(timeout)
            data = b""
            while len(data) < 5 or len(data) < 5 + struct.unpack_from("!H", data, 3)[0]:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                data += chunk
            captured.append(data)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        connect(port)
    except Exception:
        pass
    server.join(timeout)
    listener.close()
    if not captured:
        raise RuntimeError("the client sent no ClientHello")
    return captured[0]
