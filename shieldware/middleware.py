"""ShieldMiddleware: the pure-ASGI front door that decides every HTTP request and websocket handshake."""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections.abc import Awaitable, Callable, MutableMapping
from itertools import chain
from pathlib import Path
from typing import Any

from shieldware.actions.challenge import install_challenges
from shieldware.actions.pages import decision_response, wants_json
from shieldware.biometrics.endpoint import install_telemetry
from shieldware.decision import SHIELD_HEADER_NAMES, SHIELD_HEADER_PREFIXES, Decision, Verdict, head_lines
from shieldware.engine import Engine
from shieldware.facts import RequestFacts, TrustedProxies, facts_from_scope, header_map_of, route_path
from shieldware.fastlane.lane import HELD, MISS, REMOTE, FastLane
from shieldware.metrics import PROMETHEUS_CONTENT_TYPE
from shieldware.outcomes import capture_account, header_rule_names, mark_reported, tell_engine
from shieldware.policy import Policy, default_policy, load_policy
from shieldware.response_watch import ResponseWatch
from shieldware.store import Store, open_store
from shieldware.store.base import StoreUnavailable, WindowStats
from shieldware.windows.layout import OUT_WIDTH

log = logging.getLogger("shieldware.middleware")

# ASGI's own shapes, as Starlette and uvicorn type them (mutable mappings), so any ASGI app and
# server type-check against ShieldMiddleware.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Endpoint = Callable[[Scope, Receive, Send, RequestFacts], Awaitable[None]]
# An endpoint's answer from the scope alone: True if it answered, False (having done nothing) to
# have the request's facts made and the endpoint asked with them.
QuickEndpoint = Callable[[Scope, Receive, Send, float], Awaitable[bool]]
Responder = Callable[[Decision, RequestFacts, Scope, Receive, Send], Awaitable[None]]


async def send_simple(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ShieldMiddleware:
    """Wrap any ASGI app: `app = ShieldMiddleware(app)` uses the shipped policy and memory store.

    `policy` is a Policy or a path to a policy file; `store` a Store or a URI; `clock` returns
    the current time (tests pass their own). Internal endpoints (metrics, challenge, telemetry)
    live under `prefix` and are answered here, never by the app. `fast_lane=False` decides every
    request on the Python path (shieldware/fastlane/ answers planned ones otherwise).
    `headers_in_scope=False` is for an app that writes its upstream request itself (the proxy's
    forwarder): the X-Shield-* headers are not added to the scope's headers (a client's own are
    still taken off) but given as `decision.header_lines`, the lines of a head.
    `scope_in_place=True` is for a server that makes a scope and its state dict for each request
    and reads neither back (the proxy's uvicorn): the app gets them with the decision added rather
    than copies, two dict copies a request saved. ASGI asks middleware to copy; only a caller that
    owns the server may say so.
    """

    def __init__(
        self,
        app: ASGIApp,
        policy: Policy | str | Path | None = None,
        store: Store | str | None = None,
        *,
        engine: Engine | None = None,
        clock: Callable[[], float] = time.time,
        prefix: str = "/.shieldware",
        fast_lane: bool = True,
        headers_in_scope: bool = True,
        scope_in_place: bool = False,
    ) -> None:
        self.app = app
        self.headers_in_scope = headers_in_scope
        self.scope_in_place = scope_in_place
        if engine is None:
            if isinstance(policy, (str, Path)):
                policy = load_policy(policy)
            policy = policy or default_policy()
            if isinstance(store, str):
                store = open_store(store)
            engine = Engine(policy, store)
        self.engine = engine
        self.policy = engine.policy
        self.clock = clock
        self.prefix = prefix.rstrip("/")
        self.trusted = TrustedProxies(self.policy.trusted_proxies, self.policy.client_ip_header)
        self.tls_header = self.policy.tls_fingerprint_header
        self.own_tls = False  # the proxy sets it when it serves https and reads ClientHellos (proxy/https.py)
        # The proxy sets it: its connections are the clients' own (no server in front rewrote the
        # client address), so an untrusted peer's HTTP version is the client's.
        self.own_connections = False
        self.endpoints: dict[str, Endpoint] = {}
        self.quick_endpoints: dict[str, QuickEndpoint] = {}
        self.responders: dict[Verdict, Responder] = {}
        self._metrics_allow = TrustedProxies(self.policy.metrics_allow)
        if self.policy.metrics_path:
            self.endpoints[self.policy.metrics_path] = self._serve_metrics
        # Challenge pages, their endpoints and the clearance cookie (actions/challenge.py).
        self.challenges = install_challenges(self)
        # The browser collector, its telemetry endpoint and the per-session verdicts (biometrics/).
        install_telemetry(self)
        # Login forms whose account field we read before deciding (see shieldware.outcomes).
        self._captures_accounts = any(g.setting("account_field") for g in self.policy.groups)
        self._outcome_headers = {g.name: header_rule_names(g) for g in self.policy.groups}
        from shieldware.admin import install_admin_endpoints

        install_admin_endpoints(self)
        self.lane = FastLane.build(self) if fast_lane else None
        self._hear = self._send_and_hear  # bound once: every planned request's watch holds it
        self._steps = _step_memory(self.engine)
        # `handle(scope, receive, send)` serves one ASGI connection: it returns the awaitable that
        # does, with no frame of ours around it (the proxy calls it directly, shieldware/proxy/app.py).
        # With a lane it is the lane's front door in C (`Lane_handle` in shieldware/fastlane/_lane.c):
        # a request the lane answers gets the app's own coroutine, since a frame between the server
        # and the app costs every await the app makes, and its response watch tells the engine what
        # it must hear as the response starts (`_send_and_hear`). The rest come to `_after_front`.
        self.handle: Callable[[Scope, Receive, Send], Awaitable[None]] = self._handle_without_lane
        if self.lane is not None:
            self.lane.native.set_front(self.app, self.clock, self._after_front, self._hear,
                                       self.lane.by_group(self._outcome_headers), self.lane.feedback_statuses,
                                       self.lane.rearm, scope_headers=headers_in_scope,
                                       scope_in_place=scope_in_place)
            self.handle = self.lane.native.handle

    def facts_of(self, scope: Scope, now: float) -> RequestFacts:
        """The facts of a request as the Python path reads them (every signal runs on them)."""
        return facts_from_scope(scope, now, self.trusted, self.tls_header, self.own_tls, self.own_connections)

    def add_endpoint(self, path: str, handler: Endpoint, quick: QuickEndpoint | None = None) -> None:
        """Serve `path` with `handler`; `quick`, if given, is asked first, before the request's facts
        are made (forward-auth's plain calls). Only a path the facts spell as it is, with no note,
        gets a quick one: the facts must have reached the same handler."""
        self.endpoints[path] = handler
        notes: list[str] = []
        if quick is not None and route_path(path, notes) == path and not notes:
            self.quick_endpoints[path] = quick

    def retire(self) -> None:
        """Another middleware serves from now on (the proxy reloaded its policy): requests still in
        flight here finish, and the fast lane's tables are let go of."""
        if self.lane is not None:
            self.lane.retire()

    def set_responder(self, verdict: Verdict, responder: Responder) -> None:
        """Replace how a verdict is answered (the challenge feature answers CHALLENGE)."""
        self.responders[verdict] = responder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app. A coroutine function, as servers ask (uvicorn and hypercorn tell ASGI 3 apps
        from others by `inspect`/`asyncio.iscoroutinefunction`); callers of our own that await
        what they call use `handle`, a frame fewer."""
        await self.handle(scope, receive, send)

    def _handle_without_lane(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """`handle` when there is no lane: every request on the Python path."""
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            return self.app(scope, receive, send)
        return self._decide(scope, receive, send, self.clock())

    def _after_front(self, scope: Scope, receive: Receive, send: Send, now: float,
                     answer: tuple | None) -> Awaitable[None]:
        """What the lane's front door did not serve itself: a lane answer that is not the app's
        scope, or none (the lane is off, or the request is not one it reads)."""
        if answer is not None:
            return self._after_lane(answer, scope, receive, send, now)
        # Armed again before the app is awaited: the lane is off when the switchboard's refresh
        # falls due, and every request arriving while this one waits for the app would
        # otherwise take the Python path too.
        self.lane.rearm(now)
        return self._decide(scope, receive, send, now)

    async def _send_and_hear(self, watch: Any, start: Message) -> None:
        """A lane-planned response's start that the engine must hear of (the app's events, or a
        status a planned signal acts on): sent, then heard, with the decision's own time."""
        await watch.send(start)
        decision = watch.decision
        await self._heard(decision, watch, decision.time, watch.hear_on)

    async def _decide(self, scope: Scope, receive: Receive, send: Send, now: float,
                      miss: tuple | None = None) -> None:
        """The Python path: every signal runs on the request's facts. `miss`: the lane had no plan
        for the request; the engine drafts one as it decides."""
        if self.quick_endpoints:
            quick = self.quick_endpoints.get(scope["path"])
            if quick is not None and await quick(scope, receive, send, now):
                return
        facts = self.facts_of(scope, now)
        endpoint = self.endpoints.get(facts.path)
        if endpoint is not None:
            await endpoint(scope, receive, send, facts)
            return
        if self._captures_accounts and (facts.method == "POST" or facts.method == "PUT"):
            group = self.policy.route_table.group_for(facts.method, facts.path)
            facts, receive = await capture_account(facts, group, receive)
        started = time.perf_counter()
        if miss is None:
            decision = await self.engine.decide(facts)
        else:
            decision, draft = await self.engine.decide_and_plan(facts)
            if draft is not None:
                self.lane.learn(miss, draft)
        self.engine.metrics.record_latency(time.perf_counter() - started)
        await self._act(decision, facts, scope, receive, send, now)

    async def _after_lane(self, answer: tuple, scope: Scope, receive: Receive, send: Send, now: float) -> None:
        """The lane's other answers: a planned decision it holds back (to log, refuse, or remember
        as a sequential step), a request with no plan yet (a new client of a planned shape gets
        one drafted; otherwise the engine decides it and drafts one), or window answers past a
        trigger (the engine assesses them without observing again)."""
        tag = answer[0]
        if tag == REMOTE:
            await self._observe_remote(answer, scope, receive, send, now)
            return
        if tag == HELD:
            _, decision, follows = answer
            self.engine.decision_log.write(decision)
            if follows:
                self._steps(decision.client_ip, decision.path, now)
            if decision.action is Verdict.ALLOW:
                await self._pass(decision, scope, receive, send, now, True, None if follows else
                                 self.lane.feedback_statuses)
            else:
                await self._refuse(decision, None, scope, receive, send)
            return
        if tag == MISS and self.lane.derive(answer, now):
            again = self.lane.native.decide(scope, now)  # a new client of a planned shape: planned now
            if again.__class__ is dict:
                await self._serve(again, again["state"]["shield"], receive, send, now, self.lane.feedback_statuses)
                return
            if again is not None and again[0] != MISS:
                await self._after_lane(again, scope, receive, send, now)
                return
        if tag == MISS:
            await self._decide(scope, receive, send, now, miss=answer)
            self.lane.rearm(now)
            return
        _, observed, plan, client_ip, fired, follows = answer
        started = time.perf_counter()
        if plan.seed is not None:  # the plan's inspection, this request's windows
            decision = self._assess_flagged(plan.seed, client_ip, fired, follows, scope, now, observed)
            self.engine.metrics.record_latency(time.perf_counter() - started)
            if decision.action is Verdict.ALLOW:
                await self._pass(decision, scope, receive, send, now, True, None)
            else:
                await self._refuse(decision, None, scope, receive, send)
            return
        facts = self.facts_of(scope, now)
        decision = await self.engine.decide(facts, observed=stats_of(observed))
        self.engine.metrics.record_latency(time.perf_counter() - started)
        await self._act(decision, facts, scope, receive, send, now)

    async def _observe_remote(self, answer: tuple, scope: Scope, receive: Receive, send: Send, now: float) -> None:
        """A planned request whose windows live in a shared store: the store observes the plan's
        rows (this request's holes filled), and the lane concludes from its answers as it would from
        its own kernel's; if it no longer can (disarmed, or the plan replaced meanwhile), the engine
        decides from the same answers, without observing again."""
        try:
            again, stats = await self._conclude_remote(answer, scope, now)
        except StoreUnavailable:  # the Python path does what the route group says for a store down
            await self._decide(scope, receive, send, now)
            return
        if again.__class__ is dict:
            await self._serve(again, again["state"]["shield"], receive, send, now, self.lane.feedback_statuses)
        elif again is not None:
            await self._after_lane(again, scope, receive, send, now)
        else:
            facts = self.facts_of(scope, now)
            decision = await self._timed(self.engine.decide(facts, observed=stats))
            await self._act(decision, facts, scope, receive, send, now)
            self.lane.rearm(now)

    async def _conclude_remote(self, answer: tuple, scope: Scope, now: float) -> tuple[Any, list[WindowStats]]:
        """A REMOTE answer's observations, observed in the shared store (raises StoreUnavailable),
        and what the lane concludes from the store's answers (None: it no longer can), with them."""
        _, plan, client_ip, pid, session, made, started = answer
        stats = await self.engine.store.observe(plan.remote.observations(client_ip, pid, session), now)
        again = self.lane.native.conclude(scope, now, plan, array("d", chain.from_iterable(stats)), made, started)
        return again, stats

    async def lane_decision(self, scope: Scope, now: float, make_facts: Callable[[], RequestFacts]) -> Decision | None:
        """The decision for a request that is answered for elsewhere (forward-auth asks of the
        client's request, rebuilt as `scope`; `make_facts()` makes its facts, which only the Python
        path reads), reached as `handle` would reach it: from a plan, a held or fresh assessment of
        its windows, or, when the lane has no plan yet, on the Python path, drafting one. None: the
        lane does not read this request (decide it on the Python path). Nothing is served."""
        lane = self.lane
        if lane is None:
            return None
        answer = lane.native.decide(scope, now)
        if answer is None:
            lane.rearm(now)
            return None
        return await self._decision_of(answer, scope, make_facts, now)

    async def _decision_of(self, answer: Any, scope: Scope, make_facts: Callable[[], RequestFacts],
                           now: float) -> Decision:
        """lane_decision() for one of the lane's answers."""
        lane = self.lane
        if answer.__class__ is dict:  # a plain, quiet plan: counted and left unlogged in the lane
            return answer["state"]["shield"]
        tag = answer[0]
        if tag == REMOTE:
            try:
                again, stats = await self._conclude_remote(answer, scope, now)
            except StoreUnavailable:  # the Python path does what the route group says for a store down
                return await self._timed(self.engine.decide(make_facts()))
            if again is not None:
                return await self._decision_of(again, scope, make_facts, now)
            return await self._timed(self.engine.decide(make_facts(), observed=stats))
        if tag == HELD:
            _, decision, follows = answer
            self.engine.decision_log.write(decision)
            if follows:
                self._steps(decision.client_ip, decision.path, now)
            return decision
        if tag == MISS:
            if lane.derive(answer, now):
                again = lane.native.decide(scope, now)
                if again is not None and (again.__class__ is dict or again[0] != MISS):
                    return await self._decision_of(again, scope, make_facts, now)
            decision, draft = await self._timed(self.engine.decide_and_plan(make_facts()))
            if draft is not None:
                lane.learn(answer, draft)
            lane.rearm(now)
            return decision
        _, observed, plan, client_ip, fired, follows = answer
        if plan.seed is not None:
            started = time.perf_counter()
            decision = self._assess_flagged(plan.seed, client_ip, fired, follows, scope, now, observed)
            self.engine.metrics.record_latency(time.perf_counter() - started)
            return decision
        return await self._timed(self.engine.decide(make_facts(), observed=stats_of(observed)))

    async def _timed(self, deciding: Awaitable[Any]) -> Any:
        """An engine decision, its time recorded in the latency histogram."""
        started = time.perf_counter()
        result = await deciding
        self.engine.metrics.record_latency(time.perf_counter() - started)
        return result

    def _assess_flagged(self, seed: Any, client_ip: str, fired: int, follows: bool, scope: Scope, now: float,
                        observed: bytes) -> Decision:
        """A planned request past a trigger: the client's assessment held while the same findings
        fire (shieldware/fastlane/holds.py), or a fresh one from the plan's inspection and this
        request's window answers."""
        holds = self.lane.holds
        path = scope["path"]
        decision = holds.find(seed, client_ip, fired, now, path)
        if decision is not None:
            self.engine.record(decision)
            if follows:  # what the traffic signal's assessment would have remembered
                self._steps(client_ip, path, now)
            return decision
        query = scope.get("query_string") or b""
        decision = self.engine.assess_planned(seed, client_ip, path, query.decode("latin-1"), now, stats_of(observed))
        holds.keep(seed, client_ip, fired, decision)
        return decision

    async def _act(self, decision: Decision, facts: RequestFacts, scope: Scope, receive: Receive, send: Send,
                   now: float) -> None:
        if decision.action is not Verdict.ALLOW:
            await self._refuse(decision, facts, scope, receive, send)
            return
        await self._pass(decision, scope, receive, send, now, SHIELD_HEADER_NAMES.isdisjoint(facts.header_map), None)

    async def _pass(self, decision: Decision, scope: Scope, receive: Receive, send: Send, now: float,
                    headers_clean: bool, feedback_on: frozenset[int] | None) -> None:
        """Serve the request: the app sees the decision in scope state and X-Shield-* headers
        (in the scope's headers, or as `decision.header_lines`: see `headers_in_scope`).

        `headers_clean`: the client sent no X-Shield-* header of its own. `feedback_on`: the
        response statuses the engine must hear of (None: every one), for planned requests whose
        signals said which statuses they act on.
        """
        if not self.scope_in_place:
            scope = dict(scope)
        if not headers_clean:  # the client sent X-Shield-* itself: drop them, the app must be able to trust ours
            scope["headers"] = [h for h in scope["headers"] if not h[0].lower().startswith(SHIELD_HEADER_PREFIXES)]
        if self.headers_in_scope:
            scope["headers"] = [*scope["headers"], *decision.shield_headers()]
        else:
            decision.header_lines = head_lines(decision.shield_headers())
        state = scope.get("state")
        if not (self.scope_in_place and type(state) is dict):
            scope["state"] = state = dict(state) if state else {}
        state["shield"] = decision
        decision.reporter = self._report
        await self._serve(scope, decision, receive, send, now, feedback_on)

    async def _serve(self, scope: Scope, decision: Decision, receive: Receive, send: Send, now: float,
                     feedback_on: frozenset[int] | None) -> None:
        """Call the app with the scope it sees, watching the response for its status and events."""
        watch = ResponseWatch(send, self._outcome_headers.get(decision.route_group))
        try:
            await self.app(scope, receive, watch)
        finally:
            if watch.events or feedback_on is None or watch.status in feedback_on:
                await self._heard(decision, watch, now, feedback_on)

    async def _heard(self, decision: Decision, watch: Any, now: float, feedback_on: frozenset[int] | None) -> None:
        """Tell the engine what the response said: the app's events, then the status if it listens."""
        status = watch.status
        await tell_engine(self.engine, decision, now, watch.events or (), status,
                          feedback_on is None or status in feedback_on, watch.outcomes)

    def _report(self, decision: Decision, event: str, fields: dict[str, Any]) -> None:
        """`request.state.shield.report(...)` lands here; the engine learns asynchronously."""
        mark_reported(decision, event)  # now, so the status rules after the response stand aside
        task = asyncio.get_running_loop().create_task(
            self.engine.feedback(decision, self.clock(), event=event, fields=fields))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    async def _refuse(self, decision: Decision, facts: RequestFacts | None, scope: Scope, receive: Receive,
                      send: Send) -> None:
        """Answer a refused request. `facts` None: the lane decided it and no facts were built; they
        are built here only for a responder (a challenge page reads many), since the plain page
        reads a header or two and a flood is refused thousands of times a second."""
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": f"shieldware {decision.ref}"})
            return
        responder = self.responders.get(decision.action)
        if responder is not None:
            if facts is None:
                facts = self.facts_of(scope, decision.time)
            await responder(decision, facts, scope, receive, send)
            return
        header_map = facts.header_map if facts is not None else header_map_of(scope["headers"])
        status, headers, body = decision_response(decision, wants_json(header_map))
        await send_simple(send, status, headers, body)

    def shows_internals_to(self, client_ip: str) -> bool:
        """Whether `client_ip` may read how shieldware runs (metrics, the proxy's health details):
        the policy's `metrics.allow_from`, loopback by default. Everyone else could learn from them
        whether blocking is on and where the shop's servers are."""
        return self._metrics_allow.trusts(client_ip)

    async def _serve_metrics(self, scope: Scope, receive: Receive, send: Send, facts: RequestFacts) -> None:
        if not self.shows_internals_to(facts.client_ip):
            await send_simple(send, 404, [(b"content-type", b"text/plain")], b"not found")
            return
        body = self.engine.metrics.exposition() + store_up_lines(await self.engine.store.health())
        await send_simple(send, 200, [(b"content-type", PROMETHEUS_CONTENT_TYPE.encode())], body)


def store_up_lines(health: dict[str, Any]) -> bytes:
    """shieldware_store_up: whether the store answered at this scrape, for an alert that needs
    no reason-code arithmetic. Asked by the worker scraped, not counted: workers on Redis share
    the one store, and a gauge summed over workers would say nothing."""
    up = 1.0 if health["reachable"] else 0.0
    return (b"# HELP shieldware_store_up Whether the window store answered a check at this scrape.\n"
            b"# TYPE shieldware_store_up gauge\n"
            + f'shieldware_store_up{{kind="{health["kind"]}"}} {up}\n'.encode())


def stats_of(observed: bytes) -> list[WindowStats]:
    """The window answers the lane observed (its output rows, as the memory store answers them)."""
    return list(map(WindowStats, _floats(observed)))


def _floats(observed: bytes) -> list[list[float]]:
    values = memoryview(observed).cast("d").tolist()
    return [values[i:i + OUT_WIDTH] for i in range(0, len(values), OUT_WIDTH)]


def _step_memory(engine: Engine) -> Callable[[str, str, float], None]:
    """Where a planned product page that followed the previous id is remembered until its feedback."""
    for signal in engine.signals:
        remember = getattr(signal, "remember_step", None)
        if remember is not None:
            return remember
    return lambda client_ip, path, now: None


# Report tasks are kept referenced until done, or the event loop could drop them mid-flight.
_pending: set[Any] = set()
