"""TLS for the proxy's own listener: the certificate and key checked before anything is served,
and looked at again while it serves, so that a renewed certificate is taken up without a restart.

OpenSSL's complaints about a certificate ("[SSL] PEM lib (_ssl.c:3926)") do not say which file is
wrong or what to do about it. `check_tls` loads the pair as the proxy will serve it and says, in one
sentence, what stops it: a missing or unreadable file, a file that holds no certificate or no
private key, a key protected by a passphrase (the proxy would stop at start-up to ask for it), or a
key that belongs to another certificate.

Certificates are renewed in place (certbot swaps the symlinks under live/, other tools rewrite the
files), every few weeks. `CertificateWatch` looks at the two files' identities at most every
`recheck` seconds (and after SIGHUP), on a new connection, and loads a changed pair for the
connections that follow; connections already open keep the certificate they shook hands with. A
pair that does not load (a key from another certificate, a file half written) is refused with the
same sentence as at start-up, logged once, and the previous certificate goes on being served: a
bad renewal never takes https down.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shieldware.metrics import Metrics
from shieldware.proxy.certificate import CertificateFacts, certificate_facts
from shieldware.proxy.settings import DEFAULT_TLS_RECHECK

log = logging.getLogger("shieldware.proxy")

SETTLE_SECONDS = 1.0  # a file written more recently than this may be half written: looked at next time
EXPIRY_WARNING_DAYS = 14.0

_PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_PEM_PRIVATE_KEY = "PRIVATE KEY-----"  # PKCS#8, and the older RSA/EC PRIVATE KEY forms
_PEM_ENCRYPTED = ("ENCRYPTED PRIVATE KEY", "Proc-Type: 4,ENCRYPTED")


class _AskedForPassphrase(Exception):
    pass


def _read(path: str, option: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        raise ValueError(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{option} {path}: is a directory, not a PEM file") from None
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot be read ({exc.strerror})") from None


def check_tls(cert: str, key: str | None) -> None:
    """Raise ValueError, naming the file and the fix, if this certificate and key (None: the key is
    in the certificate's file) cannot serve TLS."""
    load_tls(cert, key)


def load_tls(cert: str, key: str | None) -> ssl.SSLContext:
    """The server context the proxy serves this certificate and key with; ValueError as check_tls."""
    cert_text = _read(cert, "--tls-cert")
    if _PEM_CERTIFICATE not in cert_text:
        raise ValueError(f"--tls-cert {cert}: holds no PEM certificate (a '{_PEM_CERTIFICATE}' block)")
    key_option, key_path = ("--tls-key", key) if key else ("--tls-cert", cert)
    key_text = _read(key, "--tls-key") if key else cert_text
    if _PEM_PRIVATE_KEY not in key_text:
        where = "" if key else "; give the key with --tls-key, or append it to the certificate's file"
        raise ValueError(f"{key_option} {key_path}: holds no PEM private key{where}")
    if any(marker in key_text for marker in _PEM_ENCRYPTED):
        raise ValueError(f"{key_option} {key_path}: the private key is protected by a passphrase, which the "
                         f"proxy cannot ask for; give it a copy without one (openssl pkey -in KEY -out PLAIN_KEY), "
                         f"readable only by the proxy's user")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _AskedForPassphrase:
        raise ValueError(f"{key_option} {key_path}: the private key is protected by a passphrase; give "
                         f"the proxy a copy without one") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"{key_option} {key_path}: the private key does not belong to the certificate in "
                             f"{cert}") from None
        raise ValueError(f"--tls-cert {cert} / {key_option} {key_path}: OpenSSL cannot use them "
                         f"({exc.reason or exc})") from None
    return context


def _no_passphrase() -> str:
    raise _AskedForPassphrase()


FileIdentity = tuple[tuple[int, int, int, int], ...]  # (device, inode, size, mtime ns) of each file


class CertificateWatch:
    """The certificate this process serves, taken up again when its files are renewed (see above).

    `current(now)` is called for each new connection with the wall clock (file times are wall
    clock); it costs a comparison, and two stat calls every `recheck` seconds (0: only when SIGHUP
    asks, through `look_next_time`).
    """

    def __init__(self, cert: str, key: str | None, recheck: float = DEFAULT_TLS_RECHECK,
                 now: float | None = None, metrics: Metrics | None = None) -> None:
        now = time.time() if now is None else now
        self.cert, self.key, self.recheck = cert, key, recheck
        self.metrics = metrics or Metrics.shared()
        self._identity = self._identities()  # before loading: a change while it loads is seen next time
        self.context = load_tls(cert, key)
        self.loaded_at = now
        self.facts = self._read_facts(now)
        self.refused: str | None = None  # why the files as they are now are not served
        self._refused_identity: FileIdentity | None = None
        self._next_look = now + recheck if recheck > 0 else math.inf
        self._asked = False  # SIGHUP asked for a look: no waiting for the files to settle

    def current(self, now: float) -> ssl.SSLContext:
        if now >= self._next_look:
            self._next_look = now + self.recheck if self.recheck > 0 else math.inf
            self._look(now)
        return self.context

    def look_next_time(self) -> None:
        """Look at the files on the next connection, whenever the last look was (SIGHUP)."""
        self._next_look, self._asked = 0.0, True

    def describe(self, now: float) -> dict[str, Any]:
        """For the health endpoint: what is served, until when, and any renewal that was refused."""
        facts = self.facts
        return {
            "certificate": self.cert,
            "subject": facts.subject if facts else None,
            "serial": facts.serial if facts else None,
            "not_after": _iso(facts.not_after) if facts else None,
            "days_left": round(facts.days_left(now), 1) if facts else None,
            "loaded_at": _iso(self.loaded_at),
            "renewal_refused": self.refused,
        }

    def _look(self, now: float) -> None:
        asked, self._asked = self._asked, False
        try:
            identity = self._identities()
        except OSError as exc:  # mid-swap, or gone: keep serving what is loaded
            self._refuse(None, f"--tls-cert {self.cert}: cannot be looked at ({exc.strerror})")
            return
        if identity == self._identity or identity == self._refused_identity:
            return
        if not asked and now - max(file[3] for file in identity) / 1e9 < SETTLE_SECONDS:
            return  # still being written, perhaps
        try:
            context = load_tls(self.cert, self.key)
        except ValueError as exc:
            self._refuse(identity, str(exc))
            return
        self.context, self._identity, self.loaded_at = context, identity, now
        self.refused = self._refused_identity = None
        self.facts = self._read_facts(now)
        self.metrics.count("tls_certificate_reloads", outcome="loaded")
        serial = self.facts.serial if self.facts else "unreadable"
        log.info("https: took up the renewed certificate %s (serial %s) for new connections", self.cert, serial)

    def _refuse(self, identity: FileIdentity | None, reason: str) -> None:
        if reason == self.refused and identity == self._refused_identity:
            return  # said already
        self.refused, self._refused_identity = reason, identity
        self.metrics.count("tls_certificate_reloads", outcome="refused")
        log.error("https: the changed certificate files are not served, the certificate loaded at %s still is: %s",
                  _iso(self.loaded_at), reason)

    def _identities(self) -> FileIdentity:
        paths = (self.cert, self.key) if self.key else (self.cert,)
        return tuple(_identity(os.stat(path)) for path in paths)

    def _read_facts(self, now: float) -> CertificateFacts | None:
        try:
            facts = certificate_facts(Path(self.cert).read_text(encoding="ascii", errors="replace"))
        except (OSError, ValueError) as exc:  # OpenSSL took it; only our reading of its dates failed
            log.warning("https: %s serves, but its expiry cannot be read here (%s)", self.cert, exc)
            return None
        days = facts.days_left(now)
        if days <= 0:
            log.error("https: the certificate %s expired on %s; browsers refuse it", self.cert, _iso(facts.not_after))
        elif days < EXPIRY_WARNING_DAYS:
            log.warning("https: the certificate %s expires in %.1f days (%s)", self.cert, days, _iso(facts.not_after))
        return facts


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_WATCHES: dict[tuple[str, str | None], CertificateWatch] = {}


def served_certificate(cert: str, key: str | None, recheck: float = DEFAULT_TLS_RECHECK) -> CertificateWatch:
    """This process's watch of the certificate it serves from these files (made on first use)."""
    watch = _WATCHES.get((cert, key))
    if watch is None:
        watch = _WATCHES[(cert, key)] = CertificateWatch(cert, key, recheck)
    return watch


def look_at_certificates_next_time() -> None:
    for watch in _WATCHES.values():
        watch.look_next_time()
