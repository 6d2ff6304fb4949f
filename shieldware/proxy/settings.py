"""ProxySettings: everything `shieldware proxy` is told on its command line, as one value."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from shieldware.logfile import DEFAULT_KEEP
from shieldware.store.base import shown_uri

# Several uvicorn workers each build their app from this variable (they cannot share objects).
SETTINGS_ENV = "SHIELDWARE_PROXY_SETTINGS"

LOOPBACK = ("127.0.0.0/8", "::1/128")

# The largest request line and headers the proxy accepts (431 beyond it), and the largest response
# head it takes from the upstream (502 beyond it): generous for cookie-laden shops, where nginx's
# default is four 8 KB buffers; small enough that a client, or a shop gone wrong, cannot make the
# proxy hold megabytes per connection.
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
# Seconds a client has to send a whole request head (408 beyond it): nginx allows 60, Apache's
# mod_reqtimeout 20-40; a browser needs well under one.
DEFAULT_HEAD_TIMEOUT = 30.0
# Seconds a request body may stop arriving (408 beyond it): nginx's client_body_timeout.
DEFAULT_BODY_TIMEOUT = 60.0
# Connections one client address may hold open at once (more are closed at once). A browser opens
# at most six to a host, so this leaves room for some forty busy people behind one NAT, and
# holds a single-address flood to this many file descriptors.
DEFAULT_MAX_CONNECTIONS_PER_IP = 256
# Seconds between looks at --tls-cert/--tls-key for a renewed certificate (proxy/tls.py): a
# renewal is served within this, for the price of two stat calls.
DEFAULT_TLS_RECHECK = 10.0


@dataclass(frozen=True)
class ProxySettings:
    """How the proxy forwards and what it serves itself.

    `upstream` is the shop's base URL (None for a forward-auth-only server). `preserve_host`
    keeps the client's Host header; otherwise the upstream's host:port is sent. Timeouts are
    seconds; `max_body_bytes` bounds request bodies (413 beyond it), `max_head_bytes` request heads
    (431) and the upstream's response heads (502); `head_timeout` is how long a client may take
    to send a request head and `body_timeout` the longest pause in a request body (408 both).
    `max_connections_per_ip` caps the connections one client address holds open (0: no cap; the
    trusted proxies, or loopback when none is given, are exempt). `pool_size` caps the idle
    keep-alive connections kept to the upstream (like nginx's `keepalive N`, it does not cap
    concurrent requests). With `tls_cert` the proxy serves https on its listener.
    """

    upstream: str | None
    policy_path: str | None = None
    store_uri: str | None = None
    monitor: bool = False
    trusted_proxies: tuple[str, ...] = ()
    client_ip_header: str | None = None  # None: the policy's (x-forwarded-for unless it says otherwise)
    tls_fingerprint_header: str | None = None  # None: the policy's (a trusted edge's JA3/JA4 or $ssl_ciphers)
    preserve_host: bool = True
    max_body_bytes: int = 10 * 1024 * 1024
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    head_timeout: float = DEFAULT_HEAD_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    pool_size: int = 512
    check_path: str = "/.shieldware/check"
    health_path: str = "/.shieldware/health"
    access_log: str | None = None
    access_log_max_bytes: int = 0  # 0: the file grows until logrotate moves it
    access_log_keep: int = DEFAULT_KEEP
    decision_log: str | None = None
    outcome_logs: tuple[str, ...] = ()  # the edge's logs of the shop's statuses (forward auth; proxy/outcome_feed.py)
    tls_cert: str | None = None  # PEM certificate chain: the proxy serves https itself
    tls_key: str | None = None  # its PEM private key (None: in the certificate's file)
    tls_recheck: float = DEFAULT_TLS_RECHECK  # how often the two files are looked at for a renewal (0: on SIGHUP only)
    detection: bool = True  # False serves the bare forwarder (benchmarks use it as the baseline)

    def __post_init__(self) -> None:
        if self.upstream is not None:
            check_upstream(self.upstream)
        if self.tls_key and not self.tls_cert:
            raise ValueError("--tls-key needs --tls-cert: the key alone cannot serve https")
        for name in ("check_path", "health_path"):
            if not getattr(self, name).startswith("/"):
                raise ValueError(f"--{name.replace('_', '-')} must start with '/', got {getattr(self, name)!r}")
        if self.check_path == self.health_path:
            raise ValueError(f"--check-path and --health-path are both {self.check_path!r}: one would hide the other")

    @property
    def upstream_base(self) -> str:
        """The upstream URL without a trailing slash: request paths are appended to it."""
        return (self.upstream or "").rstrip("/")

    @property
    def upstream_netloc(self) -> str:
        return urlsplit(self.upstream or "").netloc

    def to_environment(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_environment(cls) -> ProxySettings:
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise RuntimeError(f"{SETTINGS_ENV} is not set: start workers through `shieldware proxy`")
        values = json.loads(raw)
        values["trusted_proxies"] = tuple(values.get("trusted_proxies") or ())
        values["outcome_logs"] = tuple(values.get("outcome_logs") or ())
        return cls(**values)


def check_upstream(url: str) -> None:
    """Raise ValueError, saying what is wrong, unless `url` is a base URL the forwarder can use."""
    shown = shown_uri(url)  # what the messages quote: a password typed into the URL stays out of them
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # an unclosed IPv6 bracket, a port out of range or not a number
        raise ValueError(f"--upstream {shown!r} is not a usable URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--upstream must be an http:// or https:// URL, got {shown!r}")
    if not parts.hostname:
        raise ValueError(f"--upstream names no host: {shown!r}")
    if port == 0:
        raise ValueError(f"--upstream's port must be from 1 to 65535: {shown!r}")
    if parts.username is not None or parts.password is not None:
        # Shown as it is in the start-up line and the logs, and never sent: refused, not ignored.
        raise ValueError(f"--upstream must not hold a user name or password: the proxy would not send them to the "
                         f"shop (the clients' own Authorization headers pass through): {shown!r}")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(f"--upstream is a base URL, without ?query or #fragment (each request's own path and "
                         f"query are appended to it): {shown!r}")
