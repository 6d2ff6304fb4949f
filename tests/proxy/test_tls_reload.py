"""A renewed certificate is served without a restart: what the proxy reads of a certificate
(proxy/certificate.py), the watch that takes a renewal up or refuses it (proxy/tls.py), and a real
https proxy whose files are replaced while it serves. Certificates are made by openssl."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from shieldware.metrics import Metrics
from shieldware.proxy.certificate import certificate_facts
from shieldware.proxy.tls import SETTLE_SECONDS, CertificateWatch
from tests.proxy.test_proxy_tls import OPENSSL, _self_signed
from tests.proxy_support import proxy_process, recorded_upstream


@pytest.fixture
def made(tmp_path):
    if OPENSSL is None:
        pytest.skip("openssl not installed; scripts/setup.sh installs Debian openssl")
    return tmp_path


def openssl_says(cert: Path) -> dict[str, str]:
    printed = subprocess.run([OPENSSL, "x509", "-in", str(cert), "-noout", "-serial", "-enddate", "-subject",
                              "-nameopt", "multiline"], check=True, capture_output=True, text=True).stdout
    said = {}
    for line in printed.splitlines():
        name, _, value = line.strip().partition("=")
        said[name.strip()] = value.strip()
    return said


def openssl_end(said: dict[str, str]) -> float:
    return time.mktime(time.strptime(said["notAfter"], "%b %d %H:%M:%S %Y GMT")) - time.timezone


def rsa_self_signed(where: Path, name: str) -> Path:
    cert = where / f"{name}.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "90", "-subj", f"/CN={name}",
                    "-keyout", str(where / f"{name}.key"), "-out", str(cert)], check=True, capture_output=True)
    return cert


@pytest.mark.parametrize("kind", ["ec", "rsa", "after-2049"])
def test_the_facts_read_are_the_ones_openssl_prints(made, kind):
    name = f"shop-{kind}.example"
    if kind == "rsa":
        cert = rsa_self_signed(made, name)
    else:
        later = ("-days", "10000") if kind == "after-2049" else ()  # the later -days wins
        cert, _ = _self_signed(made, name, *later)
    said = openssl_says(cert)
    facts = certificate_facts(cert.read_text())
    assert facts.serial == said["serial"]
    assert facts.subject == f"shop-{kind}.example"
    assert facts.not_after == openssl_end(said)
    if kind == "after-2049":  # GeneralizedTime, not UTCTime
        assert time.gmtime(facts.not_after).tm_year > 2050


def test_a_chain_is_read_by_its_first_certificate_and_a_key_beside_it_is_ignored(made):
    site, key = _self_signed(made, "site.example")
    other, _ = _self_signed(made, "intermediate.example")
    facts = certificate_facts(key.read_text() + site.read_text() + other.read_text())
    assert facts.subject == "site.example"
    assert facts.serial == openssl_says(site)["serial"]


@pytest.mark.parametrize("text, says", [
    ("no certificate here", "holds no PEM certificate"),
    ("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----", "not base64"),
    ("-----BEGIN CERTIFICATE-----\nMIIBkzCCATmgAwIBAgIU\n-----END CERTIFICATE-----", "not DER"),
])
def test_what_is_not_a_certificate_is_said_so(text, says):
    with pytest.raises(ValueError, match=says):
        certificate_facts(text)


def served_der(context: ssl.SSLContext) -> bytes:
    """The certificate a client is shown by a server with this context (a handshake in memory)."""
    client_side = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_side.check_hostname, client_side.verify_mode = False, ssl.CERT_NONE
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_side.wrap_bio(to_client, from_client)
    server = context.wrap_bio(to_server, from_server, server_side=True)
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        der = client.getpeercert(binary_form=True) if client.version() else None
        if der:
            return der
    raise AssertionError("no handshake")


def der_of(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


LOOPBACK_NAME = ("-addext", "subjectAltName=IP:127.0.0.1")  # for the proxy's start-up health check


def renew(made: Path, cert: Path, key: Path, name: str, age: float = 0.0) -> Path:
    """Write a new certificate over `cert` and `key` as renewal tools do (whole files swapped in)."""
    new_cert, new_key = _self_signed(made, name, *LOOPBACK_NAME)
    os.replace(new_key, key)
    os.replace(new_cert, cert)
    if age:
        past = time.time() - age
        for path in (cert, key):
            os.utime(path, (past, past))
    return cert


def test_a_renewal_is_served_to_new_handshakes_after_the_next_look(made):
    cert, key = _self_signed(made, "first.example")
    first = der_of(cert)
    start = time.time()
    watch = CertificateWatch(str(cert), str(key), recheck=10.0, now=start, metrics=Metrics())
    assert served_der(watch.current(start)) == first
    renew(made, cert, key, "second.example", age=5.0)
    second = der_of(cert)
    assert served_der(watch.current(start + 9.0)) == first  # not looked at again yet
    assert served_der(watch.current(start + 10.0)) == second
    assert watch.facts is not None and watch.facts.subject == "second.example"
    assert watch.describe(start + 10.0)["subject"] == "second.example"
    assert watch.metrics.counters == {("tls_certificate_reloads", (("outcome", "loaded"),)): 1}


def test_files_written_a_moment_ago_are_left_to_settle(made):
    cert, key = _self_signed(made, "first.example")
    start = time.time() - 100.0
    watch = CertificateWatch(str(cert), str(key), recheck=1.0, now=start, metrics=Metrics())
    first = watch.current(start)
    renew(made, cert, key, "second.example")
    written = os.stat(cert).st_mtime
    assert watch.current(written + SETTLE_SECONDS / 2) is first  # perhaps half written: next look
    assert served_der(watch.current(written + SETTLE_SECONDS + 1.0)) == der_of(cert)


def test_a_broken_renewal_is_refused_once_and_the_old_certificate_goes_on(made, caplog):
    cert, key = _self_signed(made, "first.example")
    first = der_of(cert)
    _, foreign_key = _self_signed(made, "other.example")
    start = time.time() + 10.0
    watch = CertificateWatch(str(cert), str(key), recheck=1.0, now=start, metrics=Metrics())
    os.replace(foreign_key, key)  # the renewal tool wrote a key of another certificate
    with caplog.at_level(logging.ERROR, logger="shieldware.proxy"):
        for second in range(1, 6):
            assert served_der(watch.current(start + second)) == first
    refusals = [r.getMessage() for r in caplog.records if "not served" in r.getMessage()]
    assert len(refusals) == 1 and "does not belong to the certificate" in refusals[0]
    assert "does not belong" in watch.describe(start)["renewal_refused"]
    # The operator puts a matching pair in place: taken up, and the refusal forgotten.
    renew(made, cert, key, "fixed.example", age=5.0)
    assert served_der(watch.current(start + 10.0)) == der_of(cert)
    assert watch.refused is None
    assert watch.metrics.counters == {("tls_certificate_reloads", (("outcome", "refused"),)): 1,
                                      ("tls_certificate_reloads", (("outcome", "loaded"),)): 1}


def test_a_file_missing_mid_swap_keeps_what_is_served(made):
    cert, key = _self_signed(made, "first.example")
    first = der_of(cert)
    start = time.time() + 10.0
    watch = CertificateWatch(str(cert), str(key), recheck=1.0, now=start, metrics=Metrics())
    key.rename(made / "elsewhere.key")
    assert served_der(watch.current(start + 1.0)) == first
    assert "cannot be looked at" in watch.refused
    renew(made, cert, key, "second.example", age=5.0)
    assert served_der(watch.current(start + 2.0)) == der_of(cert)


def test_recheck_zero_loads_the_files_at_start_and_when_sighup_asks(made):
    cert, key = _self_signed(made, "first.example")
    first = der_of(cert)
    start = time.time() + 10.0
    watch = CertificateWatch(str(cert), str(key), recheck=0.0, now=start, metrics=Metrics())
    renew(made, cert, key, "second.example")  # just written: SIGHUP's look does not wait for it to settle
    assert served_der(watch.current(start + 3600.0)) == first
    watch.look_next_time()  # SIGHUP
    assert served_der(watch.current(start + 3600.0)) == der_of(cert)


def test_an_expiring_certificate_is_warned_of_and_an_expired_one_is_an_error(made, caplog):
    cert, key = _self_signed(made, "short.example")  # -days 2
    with caplog.at_level(logging.WARNING, logger="shieldware.proxy"):
        soon = CertificateWatch(str(cert), str(key), now=time.time(), metrics=Metrics())
        late = CertificateWatch(str(cert), str(key), now=time.time() + 3 * 86400, metrics=Metrics())
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.WARNING, f"https: the certificate {cert} expires in 2.0 days "
            f"({soon.describe(0)['not_after']})") in said
    assert any(level == logging.ERROR and "expired on" in text for level, text in said)
    assert late.describe(time.time() + 3 * 86400)["days_left"] == -1.0


def connection(port: int) -> http.client.HTTPSConnection:
    """A connection whose handshake is done: its certificate is read from its socket."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    opened = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    opened.connect()
    return opened


def shown(opened: http.client.HTTPSConnection) -> bytes:
    return opened.sock.getpeercert(binary_form=True)


def get(opened: http.client.HTTPSConnection, path: str) -> tuple[int, bytes]:
    opened.request("GET", path, headers={"Host": "shop.example", "User-Agent": "curl/8.5.0"})
    response = opened.getresponse()
    return response.status, response.read()


def refusal_said(port: int, served: bytes) -> str | None:
    opened = connection(port)
    try:
        assert shown(opened) == served
        return json.loads(get(opened, "/.shieldware/health")[1])["tls"]["renewal_refused"]
    finally:
        opened.close()


def test_the_running_proxy_serves_a_renewed_certificate_and_keeps_open_connections(made):
    cert, key = _self_signed(made, "first.example", *LOOPBACK_NAME)
    first = der_of(cert)
    with recorded_upstream() as shop, proxy_process("--upstream", shop.url, "--monitor", "--tls-cert", str(cert),
                                                      "--tls-key", str(key), "--tls-recheck", "0.2") as proxy:
        held = connection(proxy.port)
        assert shown(held) == first
        renew(made, cert, key, "second.example")
        second = der_of(cert)
        deadline = time.monotonic() + 20
        while True:  # within a recheck and the settling second
            fresh = connection(proxy.port)
            if shown(fresh) == second:
                break
            fresh.close()
            assert time.monotonic() < deadline, "the renewed certificate was never served"
            time.sleep(0.2)
        assert get(held, "/page/1")[0] == 200  # the connection made before goes on, on its certificate
        status, body = get(fresh, "/.shieldware/health")
        tls = json.loads(body)["tls"]
        assert status == 200 and tls["subject"] == "second.example" and tls["renewal_refused"] is None
        assert tls["serial"] == openssl_says(cert)["serial"]
        held.close()
        fresh.close()
        _, foreign_key = _self_signed(made, "other.example")  # a bad renewal: the last good one is served
        os.replace(foreign_key, key)
        deadline = time.monotonic() + 20
        while not (refused := refusal_said(proxy.port, second)):
            assert time.monotonic() < deadline, "the broken renewal was never noticed"
            time.sleep(0.2)
        assert "does not belong to the certificate" in refused
    printed = proxy.printed()
    assert "are not served" in printed and "does not belong" in printed  # said where the operator looks


def test_sighup_has_the_certificate_looked_at_even_with_recheck_zero(made):
    cert, key = _self_signed(made, "first.example", *LOOPBACK_NAME)
    with recorded_upstream() as shop, proxy_process("--upstream", shop.url, "--monitor", "--tls-cert", str(cert),
                                                      "--tls-key", str(key), "--tls-recheck", "0") as proxy:
        renew(made, cert, key, "second.example")
        opened = connection(proxy.port)
        assert shown(opened) != der_of(cert)  # never looked at again by itself
        opened.close()
        os.kill(proxy.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while True:
            opened = connection(proxy.port)
            served = shown(opened)
            opened.close()
            if served == der_of(cert):
                break
            assert time.monotonic() < deadline, "SIGHUP did not have the certificate looked at"
            time.sleep(0.2)
