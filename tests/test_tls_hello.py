"""Reading the client's TLS stack from its ClientHello (shieldware/tls_hello.py).

Real hellos: this machine's Chromium, Python's ssl module (OpenSSL) and curl, each caught on a
loopback socket; and every browser in curl-impersonate's captured signatures (Chrome, Edge,
Firefox, Safari), written out as ClientHello bytes. Then what the parser must survive: hellos cut
anywhere, split over records, and bytes that are no hello at all.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldware.proxy import https
from shieldware.tls_hello import Hello, is_grease, read_hello, stack_of
from tests.proxy_support import chromium_browser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import tls_fingerprint as tlsprint  # its loopback capture and extension numbers

SIGNATURES = Path("/work/shared/data/browser-signatures")
CURL = shutil.which("curl")


# ---- hellos of real clients, caught on loopback ---------------------------------------------------


def _python_client(port: int) -> None:
    context = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        context.wrap_socket(raw, server_hostname="shop.example")


def test_pythons_ssl_module_is_a_library_stack():
    hello = read_hello(tlsprint.capture_client_hello(_python_client))
    assert hello is not None and hello.stack == "library"
    assert "grease" not in hello.traits


def test_curl_is_a_library_stack():
    if CURL is None:
        pytest.skip("curl not installed; scripts/setup.sh installs Debian curl")
    hello = read_hello(tlsprint.capture_client_hello(lambda port: subprocess.run(
        [CURL, "-sk", "--max-time", "5", f"https://127.0.0.1:{port}/"], capture_output=True)))
    assert hello is not None and hello.stack == "library"


def test_chromium_is_a_blink_stack():
    with chromium_browser() as chromium:
        page = chromium.new_page(ignore_https_errors=True)
        hello = read_hello(tlsprint.capture_client_hello(
            lambda port: page.goto(f"https://127.0.0.1:{port}/", timeout=3_000)))  # fails: the listener hangs up
        page.close()
    assert hello is not None and hello.stack == "blink"
    assert {"grease", "alps", "cert-brotli", "h2"} <= set(hello.traits)


# ---- curl-impersonate's captured browsers, as bytes ----------------------------------------------

def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _extension(entry: dict, grease: Iterator[int]) -> bytes:
    kind = entry["type"]
    code = next(grease) if kind == "GREASE" else tlsprint.EXTENSION_IDS[kind]
    if kind == "compress_certificate":
        body = bytes([len(entry["algorithms"]) * 2]) + b"".join(_u16(a) for a in entry["algorithms"])
    elif kind == "application_layer_protocol_negotiation":
        names = b"".join(bytes([len(n)]) + n.encode() for n in entry["alpn_list"])
        body = _u16(len(names)) + names
    else:
        body = bytes(entry.get("length") or 0)
    return _u16(code) + _u16(len(body)) + body


def hello_bytes(signature: dict, record_size: int = 16384) -> bytes:
    """A ClientHello with the signature's cipher suites and extensions, in records of `record_size`."""
    grease = iter([0x0A0A, 0x1A1A, 0x2A2A, 0x3A3A, 0x4A4A, 0x5A5A])
    ciphers = b"".join(_u16(next(grease) if c == "GREASE" else c) for c in signature["ciphersuites"])
    extensions = b"".join(_extension(entry, grease) for entry in signature["extensions"])
    body = (b"\x03\x03" + bytes(32) + bytes([32]) + bytes(32) + _u16(len(ciphers)) + ciphers
            + b"\x01\x00" + _u16(len(extensions)) + extensions)
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    records = [message[i:i + record_size] for i in range(0, len(message), record_size)]
    return b"".join(b"\x16\x03\x01" + _u16(len(part)) + part for part in records)


def signatures() -> list[tuple[str, str, dict]]:
    if not SIGNATURES.is_dir():
        return []
    found = []
    for family in ("chrome", "edge", "firefox", "safari"):
        for document in yaml.safe_load_all((SIGNATURES / f"{family}.yaml").read_text()):
            if document and "signature" in document:
                found.append((family, document["name"], document["signature"]["tls_client_hello"]))
    return found


STACK_OF_FAMILY = {"chrome": "blink", "edge": "blink", "firefox": "gecko", "safari": "webkit"}


def test_every_captured_browser_reads_as_its_own_engines_stack():
    captured = signatures()
    if not captured:
        pytest.skip(f"curl-impersonate's signatures not found at {SIGNATURES}")
    assert len(captured) >= 20
    wrong = [(name, read_hello(hello_bytes(signature)))
             for family, name, signature in captured
             if (read_hello(hello_bytes(signature)) or Hello("none", ())).stack != STACK_OF_FAMILY[family]]
    assert wrong == []


def test_a_hello_split_over_records_and_reads_is_read_once_whole():
    captured = signatures()
    if not captured:
        pytest.skip(f"curl-impersonate's signatures not found at {SIGNATURES}")
    data = hello_bytes(captured[0][2], record_size=100)
    assert read_hello(data) == read_hello(hello_bytes(captured[0][2]))
    assert all(read_hello(data[:cut]) is None for cut in range(len(data)))  # incomplete until the end


# ---- what the parser must survive -----------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # a ServerHello
    b"\x16\x03\x01\x00\x04\x01\x00\x00\x00",  # a ClientHello with an empty body
    b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00",
])
def test_what_is_no_whole_hello_reads_as_none(data):
    assert read_hello(data) is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_after_a_hello_header_never_raise(tail):
    data = b"\x16\x03\x01" + _u16(len(tail) + 4) + b"\x01" + len(tail).to_bytes(3, "big") + tail
    hello = read_hello(data)
    assert hello is None or hello.stack in ("blink", "webkit", "gecko", "library")


def test_grease_values_and_the_header_value():
    assert [v for v in range(0x10000) if is_grease(v)] == [0x0A0A + 0x1010 * n for n in range(16)]
    hello = Hello("blink", ("grease", "alps"))
    assert hello.header_value() == "swtls/blink grease,alps"
    assert stack_of(hello.header_value()) == "blink"
    assert stack_of("swtls/quantum x") is None and stack_of("t13d1516h2_8daaf6152771_e5627efa2ab1") is None


class _Http:
    """What HelloReadingTLS hands the hello to: the HTTP protocol's parser."""

    def __init__(self) -> None:
        self.parser = type("Parser", (), {"tls_hello": None})()


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_hello_trickled_a_byte_at_a_time_is_parsed_once_a_record(monkeypatch, loop):
    captured = signatures()
    if not captured:
        pytest.skip(f"curl-impersonate's signatures not found at {SIGNATURES}")
    data = hello_bytes(captured[0][2], record_size=40)
    parses = []
    monkeypatch.setattr(https, "read_hello", lambda seen: parses.append(len(seen)) or read_hello(seen))
    http = _Http()
    # Not connected, the TLS layer only stores what it is given: the reading is what is tested here.
    tls = https.HelloReadingTLS(loop, http, ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    for byte in data:
        tls.get_buffer(1)[:1] = bytes([byte])
        tls.buffer_updated(1)
    records, at = 0, 0
    while at < len(data):
        records, at = records + 1, at + 5 + int.from_bytes(data[at + 3:at + 5], "big")
    tls.connection_lost(None)
    assert records > 3 and len(parses) == records  # once a record, at its end
    assert http.parser.tls_hello == read_hello(data).header_value().encode()


def test_bytes_that_are_no_tls_are_let_go_at_once(loop):
    http = _Http()
    tls = https.HelloReadingTLS(loop, http, ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    request = b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n"
    tls.get_buffer(len(request))[:len(request)] = request
    tls.buffer_updated(len(request))
    tls.connection_lost(None)
    assert tls._hello is None and http.parser.tls_hello is None
