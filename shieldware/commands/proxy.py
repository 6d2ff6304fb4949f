"""`shieldware proxy`: serve the reverse proxy (and the forward-auth endpoint) with uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import functools
import ipaddress
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from shieldware.actions.tokens import ENV_KEY_FILE, ENV_KEYS
from shieldware.logfile import DEFAULT_KEEP, check_writable
from shieldware.metrics_dir import METRICS_DIR_ENV
from shieldware.policy import PolicyError
from shieldware.proxy.settings import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_HEAD_BYTES,
    DEFAULT_TLS_RECHECK,
    LOOPBACK,
    ProxySettings,
)
from shieldware.store import shown_uri

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """`10M`, `512k`, `1048576` → bytes (binary units, like nginx's client_max_body_size)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size such as 10M, 512k or 1048576, got {text!r}")
    return int(float(match.group(1)) * _SCALE[match.group(2).lower()])


def parse_seconds(text: str) -> float:
    """A timeout: a number of seconds above zero (`0.5`, `30`)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, such as 30 or 0.5, got {text!r}")
    return seconds


def parse_interval(text: str) -> float:
    """How often something is done again: seconds above zero, or 0 for never."""
    return 0.0 if text.strip() in ("0", "0.0") else parse_seconds(text)


def parse_count(text: str) -> int:
    """A whole number, 0 or more (`256`; 0 turns the limit it sets off)."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number such as 256 (0 for no limit), got {text!r}")
    return int(text)


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[::1]:8080` or `:8080` (all interfaces)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def parse_network(text: str) -> str:
    """A --trusted-proxy value: an address or a CIDR network, kept as written."""
    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an address or network such as 10.0.0.0/8, 203.0.113.7 or 2001:db8::/32, got {text!r}") from None
    return text.strip()


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "proxy", help="run shieldware as a reverse proxy in front of any shop",
        description="Reverse proxy: every request is decided by shieldware, then streamed to the upstream "
        "shop. Also serves the forward-auth endpoint for nginx auth_request / Traefik forwardAuth.")
    parser.add_argument("--upstream", help="the shop's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--auth-only", action="store_true",
                        help="no upstream: serve only the forward-auth and health endpoints")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                        help="address to listen on (default 127.0.0.1:8080)")
    parser.add_argument("--policy", help="policy file (default: the shipped shop policy)")
    parser.add_argument("--store", help="store URI overriding the policy's (redis://... for several workers)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR", type=parse_network,
                        help="a load balancer / edge proxy allowed to set X-Forwarded-* (repeatable); "
                        "forward-auth answers only these (loopback when none is given)")
    parser.add_argument("--client-ip-header", metavar="NAME", choices=("x-forwarded-for", "forwarded", "x-real-ip"),
                        type=str.lower,
                        help="the header the trusted proxies write the client's address into: x-forwarded-for "
                        "(the policy's default), forwarded or x-real-ip. The others are the client's own "
                        "and are not read")
    parser.add_argument("--tls-fingerprint-header", metavar="NAME", type=_header_name,
                        help="the header the trusted proxies put the client's TLS fingerprint in: a JA3 or JA4 "
                        "value, or nginx's $ssl_ciphers (the README's nginx snippet sends it as x-tls-ciphers); "
                        "overrides the policy's tls_fingerprint_header")
    parser.add_argument("--monitor", action="store_true", help="monitor mode: decide and log, block nothing")
    parser.add_argument("--rewrite-host", action="store_true",
                        help="send the upstream's host:port as Host (default: keep the client's Host)")
    parser.add_argument("--max-body", type=parse_size, default=10 * 1024**2, metavar="SIZE",
                        help="largest request body accepted, e.g. 10M (default); larger gets 413")
    parser.add_argument("--max-head", type=parse_size, default=DEFAULT_MAX_HEAD_BYTES, metavar="SIZE",
                        help="largest request line and headers accepted, e.g. 64k (default); larger gets 431")
    parser.add_argument("--head-timeout", type=parse_seconds, default=DEFAULT_HEAD_TIMEOUT, metavar="SECONDS",
                        help="longest a client may take to send a request head (default 30); then 408 "
                        "(a connection that sends nothing is closed)")
    parser.add_argument("--max-connections-per-ip", type=parse_count, default=DEFAULT_MAX_CONNECTIONS_PER_IP,
                        metavar="N", help="connections one client address may hold open (default "
                        f"{DEFAULT_MAX_CONNECTIONS_PER_IP}, 0 for no limit); more are closed at once. The "
                        "trusted proxies, or loopback when none is given, are exempt. Counted per worker")
    parser.add_argument("--body-timeout", type=parse_seconds, default=DEFAULT_BODY_TIMEOUT, metavar="SECONDS",
                        help="longest pause in a request body (default 60); then 408")
    parser.add_argument("--connect-timeout", type=parse_seconds, default=5.0, metavar="SECONDS",
                        help="longest wait to open a connection to the upstream (default 5); then 504")
    parser.add_argument("--read-timeout", type=parse_seconds, default=60.0, metavar="SECONDS",
                        help="longest wait for the upstream's next bytes (default 60); then 504")
    parser.add_argument("--shutdown-timeout", type=int, default=30, metavar="SECONDS",
                        help="on SIGTERM, how long in-flight requests may take to finish (default 30)")
    parser.add_argument("--access-log", metavar="FILE",
                        help="combined-format access log file ('-' for stdout)")
    parser.add_argument("--access-log-max", type=parse_size, default=0, metavar="SIZE",
                        help="rotate the access log past this size (e.g. 100M; default 0: never, logrotate's "
                             "renames are followed either way)")
    parser.add_argument("--access-log-keep", type=parse_count, default=DEFAULT_KEEP, metavar="N",
                        help=f"rotated access logs kept (default {DEFAULT_KEEP})")
    parser.add_argument("--decision-log", metavar="FILE",
                        help="JSON-lines decision log file (rotated as the policy's decision_log says)")
    parser.add_argument("--outcome-log", action="append", default=[], metavar="FILE",
                        help="forward auth: the edge's log of the shop's statuses, one 'X-Shield-Ref status "
                        "\"X-Shield-Event\"' per line or its JSON access log (repeatable); statuses and events "
                        "go back to the engine (404 probing, failed logins and their accounts) as the proxy's own do")
    parser.add_argument("--tls-cert", metavar="FILE",
                        help="serve https: the PEM certificate chain (the site's certificate first)")
    parser.add_argument("--tls-key", metavar="FILE",
                        help="the certificate's PEM private key, without a passphrase (default: in --tls-cert's file)")
    parser.add_argument("--tls-recheck", type=parse_interval, default=DEFAULT_TLS_RECHECK, metavar="SECONDS",
                        help="how often, at most, the certificate's files are looked at for a renewal, "
                        f"which new connections are then served (default {DEFAULT_TLS_RECHECK:g}; 0: at start "
                        "and on SIGHUP only)")
    parser.add_argument("--check-path", default="/.shieldware/check", help="forward-auth endpoint path")
    parser.add_argument("--health-path", default="/.shieldware/health", help="health endpoint path")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)  # benchmarks: no detection
    parser.set_defaults(handler=run)


def _whom_it_believes(policy: Any) -> str:
    """Where client addresses come from, for the start-up line: the first thing to check when every
    client looks like the load balancer, or a client could name its own address."""
    if not policy.trusted_proxies:  # forward-auth still hears loopback edges (proxy/app.py)
        return f"client addresses: each connection's own (forward-auth: {policy.client_ip_header} from loopback)"
    proxies = ", ".join(str(network) for network in policy.trusted_proxies)
    return f"client addresses: {policy.client_ip_header} from {proxies}"


def settings_from_args(args: argparse.Namespace) -> ProxySettings:
    from shieldware.facts import TrustedProxies
    from shieldware.proxy.tls import check_tls
    from shieldware.store import check_store_uri

    TrustedProxies(args.trusted_proxy)  # raises ValueError naming a bad CIDR
    if args.store:
        check_store_uri(args.store)  # raises ValueError naming what is wrong with the URI
    if args.access_log_keep < 1:
        raise ValueError("--access-log-keep must be 1 or more: the rotated files kept")
    if args.tls_cert:
        check_tls(args.tls_cert, args.tls_key)  # raises ValueError naming the file and what is wrong
    for path in args.outcome_log:
        check_outcome_log(path, detection=not args.bare)
    return ProxySettings(
        upstream=None if args.auth_only else args.upstream,
        policy_path=args.policy, store_uri=args.store, monitor=args.monitor,
        trusted_proxies=tuple(args.trusted_proxy), client_ip_header=args.client_ip_header,
        tls_fingerprint_header=args.tls_fingerprint_header,
        preserve_host=not args.rewrite_host,
        max_body_bytes=args.max_body, max_head_bytes=args.max_head, head_timeout=args.head_timeout,
        body_timeout=args.body_timeout, max_connections_per_ip=args.max_connections_per_ip,
        connect_timeout=args.connect_timeout, read_timeout=args.read_timeout,
        check_path=args.check_path, health_path=args.health_path, access_log=args.access_log,
        access_log_max_bytes=args.access_log_max, access_log_keep=args.access_log_keep,
        decision_log=args.decision_log, outcome_logs=tuple(args.outcome_log), tls_cert=args.tls_cert,
        tls_key=args.tls_key, tls_recheck=args.tls_recheck, detection=not args.bare,
    )


def _header_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9-]+", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a header name (letters, digits and '-')")
    return text.lower()


def check_outcome_log(path: str, detection: bool) -> None:
    """An outcome log must be readable, or in a directory where the edge will create it."""
    if not detection:
        raise ValueError("--outcome-log feeds statuses to detection, which --bare turns off")
    if os.path.isdir(path):
        raise ValueError(f"--outcome-log {path}: is a directory; name the log file the edge writes")
    if os.path.exists(path):
        if not os.access(path, os.R_OK):
            raise ValueError(f"--outcome-log {path}: not readable by this user")
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"--outcome-log {path}: the directory {folder} does not exist (the edge creates "
                         "the file, not its directory)")


def uvicorn_options(host: str, port: int, shutdown_timeout: int, settings: ProxySettings) -> dict[str, Any]:
    """How uvicorn serves the proxy with these ProxySettings (bench/busy_forwarder.py serves its
    baseline the same way)."""
    from shieldware.proxy.https import HttpsProtocolFactory
    from shieldware.proxy.serving import CoalescingHttpToolsProtocol

    limits = dict(max_head_bytes=settings.max_head_bytes, head_timeout=settings.head_timeout,
                  max_connections_per_ip=settings.max_connections_per_ip,
                  exempt_networks=settings.trusted_proxies or LOOPBACK)
    # Response head and body in one write (see proxy/serving.py): a fifth of the CPU per request.
    # ... request heads over max_head_bytes refused with 431, late ones with 408, and connections
    # over an address's cap closed. https when given a certificate (check_tls has made sure it
    # loads), with each ClientHello read on the way (proxy/https.py).
    if settings.tls_cert:
        http: Any = HttpsProtocolFactory(settings.tls_cert, settings.tls_key, settings.tls_recheck, **limits)
    else:
        http = functools.partial(CoalescingHttpToolsProtocol, **limits)
    return dict(
        host=host, port=port, log_level="warning", access_log=False, lifespan="on",
        # shieldware resolves client addresses itself, from --trusted-proxy only.
        proxy_headers=False,
        # The upstream's own Server and Date headers pass through; ours would duplicate them.
        server_header=False, date_header=False,
        timeout_graceful_shutdown=shutdown_timeout,
        http=http,
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from shieldware.proxy.app import MASTER_PID_ENV, ProxyApp, proxy_policy
    from shieldware.proxy.settings import SETTINGS_ENV

    if not args.upstream and not args.auth_only:
        print("shieldware proxy: --upstream URL is required (or --auth-only for forward-auth only)",
              file=sys.stderr)
        return 2
    if args.workers < 1:
        print("shieldware proxy: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args)
        policy = proxy_policy(settings)  # load once here so policy mistakes are reported before serving
        for kind, path in (("access log", settings.access_log), ("decision log", policy.decision_log_path)):
            if path and path != "-":
                check_writable(path, kind)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"shieldware proxy: {exc}", file=sys.stderr)
        return 2
    if args.workers > 1 and policy.store_uri.startswith("memory://") and not args.bare:
        print(f"warning: {args.workers} workers with the memory:// store: each worker keeps its own "
              "counters, so rate limits and behaviour windows see only part of each client's traffic. Use "
              "--store redis://HOST:6379/0 for several workers.", file=sys.stderr)
    host, port = args.listen
    target = settings.upstream or "forward-auth only"
    scheme = "https" if settings.tls_cert else "http"
    shown_host = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
    print(f"shieldware proxy on {scheme}://{shown_host}:{port}/ -> {target} (mode {policy.mode}, "
          f"store {shown_uri(policy.store_uri)}, workers {args.workers}); forward-auth at {settings.check_path}, "
          f"health at {settings.health_path}; {_whom_it_believes(policy)}"
          + (f"; the shop's statuses from {', '.join(settings.outcome_logs)}" if settings.outcome_logs else ""),
          file=sys.stderr, flush=True)
    options = uvicorn_options(host, port, args.shutdown_timeout, settings)
    if args.workers == 1:
        app = ProxyApp(settings, policy)
        app.reload_on_hangup = True  # with several workers uvicorn's supervisor replaces them instead
        uvicorn.run(app, **options)
    else:
        # Worker processes cannot inherit objects: each builds the app from the settings.
        os.environ[SETTINGS_ENV] = settings.to_environment()
        os.environ[MASTER_PID_ENV] = str(os.getpid())  # so a worker knows when it has outlived this process
        with _shared_signing_key(), _shared_metrics_dir():
            uvicorn.run("shieldware.proxy.app:app_from_environment", factory=True, workers=args.workers,
                        **options)
    return 0


@contextlib.contextmanager
def _shared_signing_key() -> Iterator[None]:
    """Without configured keys each worker would make its own and refuse the others' challenge
    tokens and clearances (a person who solved a challenge would be asked again by the next
    worker). So the workers share one key made for this run; it dies with the run."""
    if os.environ.get(ENV_KEYS) or os.environ.get(ENV_KEY_FILE):
        yield
        return
    print(f"warning: no signing keys configured ({ENV_KEYS} / {ENV_KEY_FILE}): the workers share a key made "
          "for this run, so clearances will not survive a restart. Set one for production.",
          file=sys.stderr)
    os.environ[ENV_KEYS] = f"run:{secrets.token_urlsafe(32)}"
    try:
        yield
    finally:
        del os.environ[ENV_KEYS]


@contextlib.contextmanager
def _shared_metrics_dir() -> Iterator[None]:
    """Workers add their metrics up in a directory (shieldware.metrics_dir) made for this run, so a
    scrape shows the whole proxy whichever worker answers. One the operator named is kept."""
    if os.environ.get(METRICS_DIR_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="shieldware-metrics-") as path:
        os.environ[METRICS_DIR_ENV] = path
        try:
            yield
        finally:
            del os.environ[METRICS_DIR_ENV]
