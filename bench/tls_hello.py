"""Question: what does reading the ClientHello add to a TLS connection the proxy serves?

`shieldware proxy --tls-cert` reads each connection's ClientHello (shieldware/tls_hello.py) while
asyncio's TLS layer makes the handshake. This times, in process, the reading of one hello against
the baseline it rides on: the server side of a whole TLS 1.3 handshake with the same certificate
type the tests use (P-256), both ends in memory (no sockets), so the ratio is the share of a
connection's TLS work the reading adds. The hello is the one Python's ssl module (OpenSSL) sends;
browsers' are the same size within a few hundred bytes. JSON out.
Usage: python bench/tls_hello.py [--handshakes 300] [--reads 20000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldware.tls_hello import read_hello


def certificate(where: Path) -> tuple[str, str]:
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run([shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> tuple[float, bytes]:
    """One handshake in memory: the server's CPU seconds for it, and the client's first flight."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_out, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, client_out, server_hostname="localhost")
    server = server_context.wrap_bio(to_server, server_out, server_side=True)
    hello, server_time = b"", 0.0
    for _ in range(10):
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        flight = client_out.read()
        hello = hello or flight
        to_server.write(flight)
        started = time.perf_counter()
        try:
            server.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        server_time += time.perf_counter() - started
        to_client.write(server_out.read())
        if done:
            break
    return server_time, hello


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--reads", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as where:
        cert, key = certificate(Path(where))
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert, key)
        client_context = ssl.create_default_context(cafile=cert)
        timings = []
        hello = b""
        for _ in range(args.handshakes):
            spent, hello = handshake(server_context, client_context)
            timings.append(spent)
    timings.sort()
    handshake_us = timings[len(timings) // 2] * 1e6
    assert read_hello(hello) is not None, "the first flight is not a whole ClientHello"
    started = time.perf_counter()
    for _ in range(args.reads):
        read_hello(hello)
    read_us = (time.perf_counter() - started) / args.reads * 1e6
    print(json.dumps({
        "hello_bytes": len(hello),
        "stack": read_hello(hello).stack,
        "read_hello_us": round(read_us, 2),
        "server_handshake_us_median": round(handshake_us, 1),
        "read_share_of_handshake": round(read_us / handshake_us, 4),
    }, indent=2))


if __name__ == "__main__":
    main()
