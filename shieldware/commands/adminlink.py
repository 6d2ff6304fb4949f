"""How the incident commands reach a running shieldware: its admin endpoint (--server) or its store."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from shieldware.decision_log import DecisionLog

SERVER_ENV = "SHIELDWARE_SERVER"
STORE_ENV = "SHIELDWARE_STORE"
LOG_ENV = "SHIELDWARE_DECISION_LOG"


class LinkError(RuntimeError):
    """The command cannot reach the switches the way it was asked to; the message says what to do."""


def add_link_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where the running shieldware is")
    where.add_argument("--server", default=os.environ.get(SERVER_ENV),
                       help=f"base URL of a server running the middleware, e.g. http://127.0.0.1:8000 "
                            f"(its admin endpoint; needed for a memory:// store) [${SERVER_ENV}]")
    where.add_argument("--store", default=os.environ.get(STORE_ENV),
                       help=f"store URI shared with the servers, e.g. redis://127.0.0.1:6379/0 [${STORE_ENV}]")
    where.add_argument("--policy", help="policy file; its store: and decision_log: are used")
    where.add_argument("--log", default=os.environ.get(LOG_ENV),
                       help=f"decision log file to record changes in / read attempts from [${LOG_ENV}]")
    where.add_argument("--prefix", default="/.shieldware", help="the middleware's endpoint prefix")


class RemoteLink:
    """Talks to the middleware's admin endpoints (loopback or `admin.allow_from` only)."""

    def __init__(self, server: str, prefix: str) -> None:
        self.base = server.rstrip("/") + prefix.rstrip("/") + "/admin"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            token = os.environ.get("SHIELDWARE_ADMIN_TOKEN")
            headers = {"authorization": f"Bearer {token}"} if token else {}
            response = httpx.request(method, self.base + path, timeout=10.0, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise LinkError(f"cannot reach {self.base}: {exc}") from exc
        if response.status_code == 404:
            raise LinkError(f"{self.base}{path} answered 404: is the middleware there, and is this machine in "
                            "the policy's admin.allow_from?")
        try:
            body = response.json()
        except ValueError as exc:
            raise LinkError(f"{self.base}{path} answered {response.status_code} without JSON") from exc
        if response.status_code != 200:
            raise LinkError(str(body.get("error", body)))
        return body

    def under_attack(self, group: str, on: bool, duration: str | None, reason: str) -> dict:
        return self._call("POST", "/under-attack", json={"group": group, "on": on, "for": duration, "reason": reason})

    def change_list(self, list_name: str, target: str, value: str, duration: str | None, reason: str,
                    remove: bool) -> dict:
        return self._call("POST", "/list", json={"list": list_name, "target": target, "value": value,
                                                 "for": duration, "reason": reason, "remove": remove})

    def state(self) -> dict:
        return self._call("GET", "/state")

    def account(self, name: str) -> dict:
        return self._call("GET", "/account", params={"name": name})


class StoreLink:
    """Works on the shared store directly (redis://...), recording changes in a decision log."""

    def __init__(self, store_uri: str, log_path: str | None, policy: Any = None) -> None:
        from shieldware.store import open_store

        if store_uri.startswith("memory:"):
            raise LinkError("a memory:// store lives inside the server process and cannot be reached from "
                            "here: pass --server URL (the middleware's admin endpoint), or use a redis:// store")
        self.store = open_store(store_uri)
        self.log_path = log_path
        self.log = DecisionLog(log_path) if log_path else None
        self.policy = policy

    def _run(self, coroutine: Any) -> Any:
        async def run_and_close() -> Any:
            try:
                return await coroutine
            finally:
                await self.store.close()
                if self.log is not None:
                    self.log.close()
        return asyncio.run(run_and_close())

    def under_attack(self, group: str, on: bool, duration: str | None, reason: str) -> dict:
        from shieldware.switches import parse_duration, set_under_attack

        if self.policy is not None and self.policy.group(group) is None:
            raise LinkError(f"unknown route group {group!r} in {self.policy.source}")
        return self._run(set_under_attack(self.store, self.log, group, on, time.time(),
                                          parse_duration(duration), reason, by=_operator()))

    def change_list(self, list_name: str, target: str, value: str, duration: str | None, reason: str,
                    remove: bool) -> dict:
        from shieldware.switches import add_entry, parse_duration, remove_entry

        if remove:
            removed = self._run(remove_entry(self.store, self.log, list_name, target, value, time.time(),
                                             by=_operator()))
            return {"removed": removed}
        return self._run(add_entry(self.store, self.log, list_name, target, value, time.time(),
                                   parse_duration(duration), reason, by=_operator()))

    def state(self) -> dict:
        from shieldware.switches import current_state

        return self._run(current_state(self.store, time.time()))

    def account(self, name: str) -> dict:
        from shieldware.account_report import account_report

        return self._run(account_report(name, self.store, self.log_path, time.time()))


class LogOnlyLink:
    """No server and no store: `shieldware account` can still read a decision log file."""

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path

    def account(self, name: str) -> dict:
        from shieldware.account_report import login_attempts

        return {"account": name, "attempts": login_attempts(self.log_path, name), "log": self.log_path}


def _operator() -> str:
    return f"cli:{os.environ.get('USER') or os.environ.get('USERNAME') or 'unknown'}"


def open_link(args: argparse.Namespace, log_only_ok: bool = False) -> Any:
    if args.server:
        return RemoteLink(args.server, args.prefix)
    policy = None
    store_uri, log_path = args.store, args.log
    if args.policy:
        from shieldware.policy import load_policy

        policy = load_policy(args.policy)
        store_uri = store_uri or policy.store_uri
        log_path = log_path or policy.decision_log_path
    if store_uri:
        return StoreLink(store_uri, log_path, policy)
    if log_only_ok and log_path:
        return LogOnlyLink(log_path)
    raise LinkError("say where the running shieldware is: --server URL (admin endpoint), or --store URI / "
                    "--policy FILE for a shared redis:// store")
