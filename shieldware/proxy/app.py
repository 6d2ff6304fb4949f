"""Assemble the proxy: access log → ShieldMiddleware (health, forward-auth) → Forwarder → upstream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import MutableMapping
from dataclasses import replace
from typing import Any

from uvicorn.config import STARTUP_FAILURE

from shieldware.engine import Engine
from shieldware.facts import RequestFacts, TrustedProxies, client_ip_header
from shieldware.middleware import ShieldMiddleware, send_simple
from shieldware.policy import Policy, default_policy, load_policy
from shieldware.proxy.access_log import AccessLog, AccessLogWriter
from shieldware.proxy.forward_auth import ForwardAuthEndpoint
from shieldware.proxy.forwarding import Forwarder
from shieldware.proxy.outcome_feed import AwaitingOutcomes, OutcomeFeed
from shieldware.proxy.settings import LOOPBACK, ProxySettings
from shieldware.proxy.tls import look_at_certificates_next_time, served_certificate
from shieldware.store import open_store, shown_uri

log = logging.getLogger("shieldware.proxy")


def proxy_policy(settings: ProxySettings) -> Policy:
    """The policy file (or the shipped one) with the command line's overrides applied."""
    policy = load_policy(settings.policy_path) if settings.policy_path else default_policy()
    changes: dict[str, Any] = {}
    if settings.monitor:
        changes["mode"] = "monitor"
    if settings.store_uri:
        changes["store_uri"] = settings.store_uri
    if settings.decision_log:
        changes["decision_log_path"] = settings.decision_log
    if settings.client_ip_header:
        changes["client_ip_header"] = client_ip_header(settings.client_ip_header)
    if settings.tls_fingerprint_header:
        changes["tls_fingerprint_header"] = settings.tls_fingerprint_header
    if settings.trusted_proxies:
        extra = TrustedProxies(settings.trusted_proxies).networks
        changes["trusted_proxies"] = tuple(dict.fromkeys((*policy.trusted_proxies, *extra)))
    elif settings.upstream is None and not policy.trusted_proxies:
        # Forward auth only: every caller is an edge, loopback unless one is named. Its challenge
        # pages, which reach us through the edge, must see the client the check sees; seeing the
        # edge instead, they would bind a clearance to the edge's address, which never fits the
        # client's next check, and the browser would be challenged again and again.
        changes["trusted_proxies"] = TrustedProxies(LOOPBACK).networks
    return replace(policy, **changes) if changes else policy


HEALTH_CONNECT_SECONDS = 0.5
"""Longest the health endpoint waits for a connection to the upstream: the answer must come well
within a load balancer's health-check timeout (often 1-2 s), and a shop that takes longer to
accept a connection is not healthy."""
MASTER_CHECK_SECONDS = 1.0
"""How often a worker of `--workers N` looks whether the proxy's master process is still there. A
master killed outright (SIGKILL, the OOM killer, a supervisor's timeout) cannot stop its workers,
and uvicorn's workers do not notice: they would go on serving, on the port and with the policy of
a proxy that no longer runs, and hold the port against its restart."""
MASTER_PID_ENV = "SHIELDWARE_PROXY_MASTER"
"""The master's process id, for its workers: a worker still starting when the master died has been
handed to another parent already, so its parent then is no sign."""
HEALTH_PROBE_EVERY = 1.0
"""Seconds a probe of the upstream answers the health asks after it: the endpoint is open to
anyone, and a flood of asks must not become a flood of connections to the shop."""


class _NoUpstream:
    """The app behind the middleware in forward-auth-only mode: everything but our endpoints is 404."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send_simple(send, 404, [(b"content-type", b"text/plain")],
                              b"shieldware forward-auth server: no upstream configured\n")
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})


class ProxyApp:
    """The whole proxy as one ASGI app; it owns start-up and shutdown of everything it opened."""

    def __init__(self, settings: ProxySettings, policy: Policy | None = None) -> None:
        self.settings = settings
        self.forwarder = Forwarder(settings) if settings.upstream else None
        self.middleware: ShieldMiddleware | None = None
        self.engine: Engine | None = None
        self.outcome_feed: OutcomeFeed | None = None
        self._feeding: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._probe: asyncio.Future[str | None] | None = None  # the health endpoint's last probe of the shop
        self._probed_at = float("-inf")
        self.reload_on_hangup = False  # one worker: SIGHUP reloads the policy in place (see reload)
        self.master_pid: int | None = None  # a worker of several: its master's process id (see watch_master)
        self._master_watch: asyncio.TimerHandle | None = None
        self.access_log = (AccessLogWriter(settings.access_log, settings.access_log_max_bytes, settings.access_log_keep)
                           if settings.access_log else None)
        # Forward-auth decisions waiting for the edge's log of the shop's answer.
        self.awaiting = AwaitingOutcomes() if settings.outcome_logs and settings.detection else None
        self.front: Any = None
        self._assemble(policy or proxy_policy(settings))
        if self.engine is not None and self.awaiting is not None:
            self.outcome_feed = OutcomeFeed(self.engine, self.awaiting, settings.outcome_logs, time.time)

    def _assemble(self, policy: Policy, kept: Engine | None = None) -> None:
        """Build what follows the policy (the engine, the middleware and its endpoints, the access
        log's view of who is trusted) and serve it from the next request on. `kept`: the engine
        this replaces, whose store (windows, switches, nonces) and decision log carry over."""
        settings = self.settings
        inner: Any = self.forwarder or _NoUpstream()
        trusted = TrustedProxies(policy.trusted_proxies, policy.client_ip_header)
        engine = middleware = None
        if settings.detection:
            store = kept.store if kept is not None else open_store(policy.store_uri)
            decision_log = kept.decision_log if kept is not None and _same_decision_log(kept.policy, policy) else None
            engine = Engine(policy, store, decision_log=decision_log)
            # The forwarder writes the X-Shield-* lines into the upstream request itself, from the
            # decision: cheaper than adding them to the scope's headers for it to copy one by one.
            # uvicorn makes each request's scope and state afresh and never reads them back: the
            # forwarder may have them with the decision added, not copies of them.
            middleware = ShieldMiddleware(inner, engine=engine, headers_in_scope=False, scope_in_place=True)
            # Serving https itself, the proxy reads each ClientHello (proxy/https.py).
            middleware.own_tls = bool(settings.tls_cert)
            # uvicorn hands the proxy each connection's real peer (proxy_headers off): a peer that is
            # not a trusted proxy is the client, and the HTTP version it spoke is its own.
            middleware.own_connections = True
            # Forward-auth callers are the edge proxies; with none configured, only loopback may ask.
            auth_trusted = trusted if trusted else TrustedProxies(LOOPBACK, policy.client_ip_header)
            ForwardAuthEndpoint(middleware, auth_trusted, self.awaiting).mount(settings.check_path)
            middleware.add_endpoint(settings.health_path, self.health)
            inner = middleware.handle  # the middleware without a frame of its own around the forwarder
        if self.forwarder is not None:
            self.forwarder.metrics = engine.metrics if engine is not None else None
        front = AccessLog(inner, self.access_log, trusted) if self.access_log else inner
        self.engine, self.middleware, self.front = engine, middleware, front
        lane = middleware.lane if middleware is not None else None
        self.decide_ahead = lane.native.decide_ahead if lane is not None else None
        if self.outcome_feed is not None:
            self.outcome_feed.engine = engine

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        await self.front(scope, receive, send)

    def log_refusal(self, client: Any, status: int, sent: int, request_line: str,
                    headers: list[tuple[bytes, bytes]]) -> None:
        """The serving layer (proxy/serving.py) refused a request before it became one for the app."""
        if isinstance(self.front, AccessLog):
            self.front.log_refusal(client, status, sent, request_line, headers)

    def reload(self) -> None:
        """SIGHUP with one worker: read the policy file again and decide by it from the next request
        on. The store (windows, switches, single-use nonces), the decision and access logs, the
        forward-auth decisions awaiting their outcome and every open connection carry over: a
        scraper's counts do not start afresh. A policy that does not load, or that names another
        store, is refused in one line and the running one stays. The certificate is looked at too."""
        look_at_certificates_next_time()
        running, serving = self.engine, self.middleware
        if running is None or serving is None:
            return  # the bare forwarder (benchmarks) has no policy
        try:
            policy = proxy_policy(self.settings)
            if policy.store_uri != running.policy.store_uri:
                raise ValueError(f"it names the store {shown_uri(policy.store_uri)}, and the proxy runs on "
                                 f"{shown_uri(running.policy.store_uri)}: changing stores needs a restart")
            self._assemble(policy, kept=running)
        except (ValueError, OSError) as exc:  # PolicyError is a ValueError
            _say(f"SIGHUP: the policy was not reloaded, the running one stays: {exc}")
            return
        serving.retire()
        if self.engine is not None and self.engine.decision_log is not running.decision_log:
            # Requests decided by the old engine may still be writing; a write after close reopens.
            asyncio.get_running_loop().call_later(self.settings.read_timeout, running.decision_log.close)
        _say(f"SIGHUP: policy {self.settings.policy_path or '(shipped)'} reloaded: mode {policy.mode}, "
             f"{len(policy.rules)} rules; windows, switches and open connections kept")

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.reload_on_hangup and hasattr(signal, "SIGHUP"):
                    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
                if self.forwarder is not None:
                    self.forwarder.open_session()
                if self.outcome_feed is not None:
                    self._feeding = asyncio.create_task(self.outcome_feed.run(self._stopping))
                if self.master_pid is not None:
                    self.watch_master()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.reload_on_hangup and hasattr(signal, "SIGHUP"):
                    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def watch_master(self) -> None:
        """Every MASTER_CHECK_SECONDS: a worker whose master is gone (it has another parent now) stops
        as SIGTERM would stop it, finishing the requests it has in flight."""
        if os.getppid() != self.master_pid:
            self._master_watch = None
            _say(f"worker {os.getpid()}: the master process {self.master_pid} is gone, so this worker stops")
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self._master_watch = asyncio.get_running_loop().call_later(MASTER_CHECK_SECONDS, self.watch_master)

    async def close(self) -> None:
        if self._master_watch is not None:
            self._master_watch.cancel()
            self._master_watch = None
        if self._feeding is not None:  # it reads the logs once more, then stops
            self._stopping.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._feeding, 5.0)
            self._feeding = None
        if self.forwarder is not None:
            await self.forwarder.close()
        if self.access_log is not None:
            self.access_log.close()
            self.access_log = None
        if self.engine is not None:
            await self.engine.close()

    async def health(self, scope: MutableMapping[str, Any], receive: Any, send: Any, facts: RequestFacts) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        # A store that does not answer leaves the proxy serving, each route group as its
        # on_store_failure says, so the answer stays 200: a load balancer taking every proxy out
        # for a Redis outage would take the shop down with it. "degraded" tells the operator.
        # A shop that does not accept connections is "degraded" too, and still 200: every proxy in
        # front of it sees the same, so taking them out would only trade our 502 page for none.
        engine, middleware = self.engine, self.middleware  # set: the endpoint is mounted with detection only
        store = await engine.store.health()
        upstream: dict[str, Any] | None = None
        if self.forwarder is not None:
            why = await self.shop_unreachable(time.monotonic())
            upstream = {"url": self.settings.upstream, "reachable": why is None} | ({"error": why} if why else {})
        reachable = store["reachable"] and (upstream is None or upstream["reachable"])
        health: dict[str, Any] = {"status": "ok" if reachable else "degraded"}
        if middleware.shows_internals_to(facts.client_ip):
            health.update(upstream=upstream, mode=engine.policy.mode, store=store)
            if self.settings.tls_cert:  # what this worker serves: until when, and any renewal it refused
                watch = served_certificate(self.settings.tls_cert, self.settings.tls_key, self.settings.tls_recheck)
                health["tls"] = watch.describe(time.time())
        body = json.dumps(health).encode()
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        await send_simple(send, 200, headers, body)

    async def shop_unreachable(self, now: float) -> str | None:
        """Why no connection to the upstream opens, or None: one probe answers every ask for
        HEALTH_PROBE_EVERY seconds (`now` on the monotonic clock), and asks that come while it runs
        wait for it."""
        if self._probe is None or (self._probe.done() and now - self._probed_at >= HEALTH_PROBE_EVERY):
            assert self.forwarder is not None
            within = min(self.settings.connect_timeout, HEALTH_CONNECT_SECONDS)
            self._probe = asyncio.ensure_future(self.forwarder.pool.unreachable(within))
            self._probed_at = now
        return await asyncio.shield(self._probe)  # an ask that is cancelled leaves the probe to the others


def _same_decision_log(running: Policy, reloaded: Policy) -> bool:
    return ((running.decision_log_path, running.decision_log_all, running.decision_log_max_bytes,
             running.decision_log_keep) == (reloaded.decision_log_path, reloaded.decision_log_all,
                                            reloaded.decision_log_max_bytes, reloaded.decision_log_keep))


def _say(line: str) -> None:
    """A line for the operator, where the proxy's start-up lines go."""
    print(f"shieldware proxy: {line}", file=sys.stderr, flush=True)


def build_proxy_app(settings: ProxySettings, policy: Policy | None = None) -> ProxyApp:
    return ProxyApp(settings, policy)


def app_from_environment() -> ProxyApp:
    """uvicorn factory for `--workers N`: each worker process builds its own app from the settings.

    A worker stops by itself when its master is gone (watch_master). A worker reads the policy file
    when it starts, so SIGHUP to the proxy (uvicorn replaces the workers one by one) is how a changed
    policy is taken up. A worker that cannot build its app says why in one line and exits with
    uvicorn's start-up failure status: on a reload uvicorn then keeps the workers it has, so a broken
    policy file never replaces a working one."""
    try:
        app = ProxyApp(ProxySettings.from_environment())
    except (ValueError, OSError) as exc:  # PolicyError is a ValueError
        _say(f"worker {os.getpid()} not started, the workers serving keep their policy: {exc}")
        raise SystemExit(STARTUP_FAILURE) from None
    app.master_pid = int(os.environ.get(MASTER_PID_ENV) or os.getppid())
    return app
