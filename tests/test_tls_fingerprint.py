"""The JA3/JA4 computation behind fingerprints/tls-fingerprints.json, on real ClientHellos."""

from __future__ import annotations

import socket
import ssl
import sys
from pathlib import Path

from shieldware.datafiles import load_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import tls_fingerprint as tlsprint

ENTRIES = load_json("fingerprints", "tls-fingerprints.json")["fingerprints"]


def test_chrome_signature_gives_the_widely_published_chrome_ja4():
    chrome = {e["value"] for e in ENTRIES if e["family"] == "chrome" and e["kind"] == "ja4"}
    assert chrome == {"t13d1516h2_8daaf6152771_e5627efa2ab1"}


def test_every_browser_and_some_tools_are_in_the_table():
    families = {(e["client"], e["family"]) for e in ENTRIES}
    assert {("browser", "chrome"), ("browser", "firefox"), ("browser", "safari")} <= families
    assert any(client == "tool" for client, _ in families)


def _python_client(port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        context.wrap_socket(raw, server_hostname="shop.example")


def test_a_live_client_hello_is_parsed_and_fingerprinted():
    record = tlsprint.capture_client_hello(_python_client)
    hello = tlsprint.hello_from_record(record)
    assert hello.alpn == ["h2", "http/1.1"]
    assert 0x0000 in hello.extensions and 0x0010 in hello.extensions  # SNI and ALPN were sent
    assert 0x0304 in hello.versions
    ja4 = tlsprint.ja4(hello)
    assert ja4.startswith("t13d") and ja4[8:10] == "h2"
    assert int(ja4[4:6]) == len(hello.ciphers) and int(ja4[6:8]) == len(hello.extensions)
    assert len(tlsprint.ja3(hello)) == 32


def test_garbage_is_not_taken_for_a_client_hello():
    for junk in (
        b"",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x00\x00",
        b"\x16\x03\x01\x00\x30\x01\x00\x00\x2c\x03\x03",
    ):
        try:
            tlsprint.hello_from_record(junk)
        except ValueError:
            continue
        raise AssertionError(f"{junk!r} was accepted")
