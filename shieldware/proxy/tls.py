"""TLS for the proxy's own listener: the certificate and key checked before anything is served.

uvicorn loads `--tls-cert`/`--tls-key` itself, but only once it starts serving, and OpenSSL's
complaints ("[SSL] PEM lib (_ssl.c:3926)") do not say which file is wrong or what to do about it.
`check_tls` loads the pair the way uvicorn will and says, in one sentence, what stops it: a
missing or unreadable file, a file that holds no certificate or no private key, a key protected
by a passphrase (the proxy would stop at start-up to ask for it), or a key that belongs to another
certificate.
"""

from __future__ import annotations

import ssl
from pathlib import Path

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


def _no_passphrase() -> str:
    raise _AskedForPassphrase()
