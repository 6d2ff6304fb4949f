"""Admin endpoints on the middleware: flip incident switches and look at accounts over HTTP.

``shieldware under-attack|allow|deny|account --server URL`` talks to these, which is how a
CLI reaches a server whose store is ``memory://`` (another process's memory is out of reach).
They answer only clients in the policy's ``admin.allow_from`` (loopback by default), never a
request forwarded by a proxy that is not in ``trusted_proxies``, and, when
``SHIELDWARE_ADMIN_TOKEN`` is set, only with ``Authorization: Bearer <token>``. Anyone else gets
a plain 404, as if nothing were there.

- ``GET  {prefix}/admin/state``                    switches and list entries in force
- ``POST {prefix}/admin/under-attack``             ``{"group", "on", "for", "reason"}``
- ``POST {prefix}/admin/list``                     ``{"list", "target", "value", "for", "reason", "remove"}``
- ``GET  {prefix}/admin/account?name=NAME``        recent login attempts and window state of an account
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any
from urllib.parse import parse_qs

from shieldware.facts import RequestFacts, TrustedProxies
from shieldware.switches import (
    add_entry,
    current_state,
    parse_duration,
    remove_entry,
    set_under_attack,
    switchboard_for,
)

MAX_ADMIN_BODY = 8 * 1024
TOKEN_ENV = "SHIELDWARE_ADMIN_TOKEN"
_FORWARDING = frozenset(("x-forwarded-for", "forwarded", "x-real-ip"))
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class AdminEndpoints:
    def __init__(self, middleware: Any) -> None:
        self.middleware = middleware
        self.engine = middleware.engine
        settings = self.engine.policy.section("admin")
        self.allowed = TrustedProxies(settings["allow_from"])
        self.proxies = TrustedProxies(self.engine.policy.trusted_proxies)

    def _admits(self, facts: RequestFacts) -> bool:
        if not self.allowed.trusts(facts.client_ip):
            return False
        # Behind a reverse proxy that is not in trusted_proxies every visitor seems to come from
        # the proxy's (often loopback) address: a forwarded request is never taken as local.
        if not self.proxies.trusts(facts.peer_ip) and not _FORWARDING.isdisjoint(facts.header_map):
            return False
        token = os.environ.get(TOKEN_ENV)
        if token:
            sent = facts.header_map.get("authorization", "")
            return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
        return True

    async def _answer(self, send: Any, status: int, body: Any) -> None:
        payload = json.dumps(body, default=str).encode()
        await send({"type": "http.response.start", "status": status, "headers": _JSON})
        await send({"type": "http.response.body", "body": payload})

    async def _guard(self, scope: Any, send: Any, facts: RequestFacts, method: str) -> bool:
        if scope["type"] != "http":  # a websocket handshake to an admin path: refuse it
            await send({"type": "websocket.close", "code": 1008, "reason": "not here"})
            return False
        if not self._admits(facts):
            await self._answer(send, 404, {"error": "not found"})
            return False
        if facts.method != method:
            await self._answer(send, 405, {"error": f"use {method}"})
            return False
        return True

    async def _json_body(self, receive: Any, send: Any) -> dict | None:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message.get("type") != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_ADMIN_BODY:
                await self._answer(send, 413, {"error": f"body larger than {MAX_ADMIN_BODY} bytes"})
                return None
            chunks.append(chunk)
            more = bool(message.get("more_body"))
        try:
            body = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            await self._answer(send, 400, {"error": "expected a JSON object"})
            return None
        return body

    async def state(self, scope: Any, receive: Any, send: Any, facts: RequestFacts) -> None:
        if await self._guard(scope, send, facts, "GET"):
            await self._answer(send, 200, await current_state(self.engine.store, facts.now))

    async def under_attack(self, scope: Any, receive: Any, send: Any, facts: RequestFacts) -> None:
        if not await self._guard(scope, send, facts, "POST"):
            return
        body = await self._json_body(receive, send)
        if body is None:
            return
        group = str(body.get("group") or "login")
        if self.engine.policy.group(group) is None:
            await self._answer(send, 400, {"error": f"unknown route group {group!r}"})
            return
        try:
            seconds = parse_duration(body.get("for", "1h"))
        except ValueError as exc:
            await self._answer(send, 400, {"error": str(exc)})
            return
        record = await set_under_attack(self.engine.store, self.engine.decision_log, group, bool(body.get("on")),
                                        facts.now, seconds, str(body.get("reason") or "")[:200],
                                        by=f"admin@{facts.client_ip}")
        if record["on"]:
            self.engine.metrics.count("under_attack_engaged", group=group, how="operator")
        await switchboard_for(self.engine).refresh(facts.now)
        await self._answer(send, 200, record)

    async def lists(self, scope: Any, receive: Any, send: Any, facts: RequestFacts) -> None:
        if not await self._guard(scope, send, facts, "POST"):
            return
        body = await self._json_body(receive, send)
        if body is None:
            return
        by = f"admin@{facts.client_ip}"
        try:
            list_name, target, value = str(body.get("list")), str(body.get("target")), str(body.get("value") or "")
            if body.get("remove"):
                removed = await remove_entry(self.engine.store, self.engine.decision_log, list_name, target, value,
                                             facts.now, by=by)
                result: dict = {"removed": removed}
            else:
                result = await add_entry(self.engine.store, self.engine.decision_log, list_name, target, value,
                                         facts.now, parse_duration(body.get("for")),
                                         str(body.get("reason") or "")[:200], by=by)
        except ValueError as exc:
            await self._answer(send, 400, {"error": str(exc)})
            return
        await switchboard_for(self.engine).refresh(facts.now)
        await self._answer(send, 200, result)

    async def account(self, scope: Any, receive: Any, send: Any, facts: RequestFacts) -> None:
        if not await self._guard(scope, send, facts, "GET"):
            return
        from shieldware.account_report import account_report

        name = (parse_qs(facts.query).get("name") or [""])[0]
        if not name:
            await self._answer(send, 400, {"error": "give ?name=ACCOUNT"})
            return
        log_path = self.engine.decision_log.path
        report = await account_report(name, self.engine.store, log_path, facts.now)
        await self._answer(send, 200, report)


def install_admin_endpoints(middleware: Any) -> None:
    if not middleware.engine.policy.section("admin")["enabled"]:
        return
    admin = AdminEndpoints(middleware)
    base = f"{middleware.prefix}/admin"
    middleware.add_endpoint(f"{base}/state", admin.state)
    middleware.add_endpoint(f"{base}/under-attack", admin.under_attack)
    middleware.add_endpoint(f"{base}/list", admin.lists)
    middleware.add_endpoint(f"{base}/account", admin.account)
