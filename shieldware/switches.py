"""Incident switches kept in the store: "under attack" per route group, and allow/deny entries with expiry.

Every process reads the same store, so a switch flipped by one (the CLI, the admin endpoint,
or the login signal detecting a mass attack) is followed by all of them within
``REFRESH_SECONDS``. Each process keeps a small cache (a :class:`SwitchBoard`) so requests
never wait for the store; the cache is refreshed in the background.

Records (``store.put_record(kind, key, value, ttl, now)``):

- ``switch.under_attack`` / group name → ``{"group", "auto", "reason", "since", "until", "by"}``
- ``list`` / ``"allow:ip:203.0.113.7"`` → ``{"list", "target", "value", "reason", "created", "until", "by"}``

Every change is written to the decision log as a ``{"type": "switch" | "list", ...}`` record.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from shieldware.store.base import StoreUnavailable

log = logging.getLogger("shieldware.switches")

UNDER_ATTACK_KIND = "switch.under_attack"
VERSION_KIND, VERSION_KEY = "switch.version", "current"  # bumped on every change: refreshes stay cheap
LIST_KIND = "list"
LISTS = ("allow", "deny")
TARGETS = ("ip", "account", "fingerprint")
REFRESH_SECONDS = 2.0
DEFAULT_UNDER_ATTACK_SECONDS = 3600.0

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hour|d|day|w|week)?s?\s*\Z", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400,
                 "w": 604800, "week": 604800}


def parse_duration(text: str | float | None) -> float | None:
    """``"2h"``, ``"30m"``, ``"90s"``, ``"1d"``, a number of seconds → seconds; None for none/forever."""
    if text is None or text == "" or str(text).lower() in ("forever", "none", "never"):
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if match is None:
            raise ValueError(f"{text!r} is not a duration; expected e.g. 90s, 30m, 2h, 1d or forever")
        seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds


def normalise_target(target: str, value: str) -> str:
    """Check and canonicalise an entry's value: IPs/CIDRs parsed, accounts lower-cased."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    value = value.strip()
    if not value:
        raise ValueError(f"an empty {target} cannot be listed")
    if target == "ip":
        try:
            if "/" in value:
                return str(ipaddress.ip_network(value, strict=False))
            return str(ipaddress.ip_address(value))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address or CIDR") from exc
    if target == "account":
        return value.lower()[:128]
    return value[:128]


def entry_key(list_name: str, target: str, value: str) -> str:
    return f"{list_name}:{target}:{value}"


# ---- operations (CLI, admin endpoint and signals all use these) ----------------------------------


async def set_under_attack(store: Any, decision_log: Any, group: str, on: bool, now: float,
                           seconds: float | None = DEFAULT_UNDER_ATTACK_SECONDS, reason: str = "",
                           by: str = "operator", auto: bool = False) -> dict:
    """Switch a route group's "under attack" mode on (for `seconds`) or off; logged either way."""
    record = {"type": "switch", "switch": "under_attack", "group": group, "on": on, "auto": auto,
              "reason": reason, "time": round(now, 3), "by": by}
    if on:
        value = {"group": group, "auto": auto, "reason": reason, "since": now, "by": by,
                 "until": None if seconds is None else now + seconds}
        await store.put_record(UNDER_ATTACK_KIND, group, value, seconds, now)
        record["until"] = value["until"]
    else:
        record["was_on"] = await store.delete_record(UNDER_ATTACK_KIND, group)
    await _bump_version(store, now)
    if decision_log is not None:
        decision_log.write_record(record)
    return record


async def add_entry(store: Any, decision_log: Any, list_name: str, target: str, value: str, now: float,
                    seconds: float | None, reason: str = "", by: str = "operator") -> dict:
    if list_name not in LISTS:
        raise ValueError(f"unknown list {list_name!r}; expected allow or deny")
    value = normalise_target(target, value)
    entry = {"list": list_name, "target": target, "value": value, "reason": reason, "created": now,
             "until": None if seconds is None else now + seconds, "by": by}
    await store.put_record(LIST_KIND, entry_key(list_name, target, value), entry, seconds, now)
    await _bump_version(store, now)
    if decision_log is not None:
        decision_log.write_record({"type": "list", "change": "add", "time": round(now, 3), **entry})
    return entry


async def remove_entry(store: Any, decision_log: Any, list_name: str, target: str, value: str, now: float,
                       by: str = "operator") -> bool:
    value = normalise_target(target, value)
    removed = await store.delete_record(LIST_KIND, entry_key(list_name, target, value))
    await _bump_version(store, now)
    if decision_log is not None:
        decision_log.write_record({"type": "list", "change": "remove", "time": round(now, 3), "list": list_name,
                                   "target": target, "value": value, "removed": removed, "by": by})
    return removed


async def _bump_version(store: Any, now: float) -> None:
    # Expiry needs no bump: every process checks `until` itself.
    await store.put_record(VERSION_KIND, VERSION_KEY, {"changed": now, "nonce": os.urandom(6).hex()}, None, now)


async def current_state(store: Any, now: float) -> dict[str, Any]:
    """Everything switched on right now: under-attack groups and list entries."""
    attacks = await store.list_records(UNDER_ATTACK_KIND, now)
    entries = await store.list_records(LIST_KIND, now)
    return {"under_attack": attacks, "entries": sorted(entries.values(), key=lambda e: (e["list"], e["target"],
                                                                                        e["value"]))}


# ---- the per-process cache ----------------------------------------------------------------------


@dataclass
class _Lists:
    ips: dict[str, dict] = field(default_factory=dict)
    networks: list[tuple[Any, dict]] = field(default_factory=list)
    accounts: dict[str, dict] = field(default_factory=dict)
    fingerprints: dict[str, dict] = field(default_factory=dict)

    def add(self, entry: dict) -> None:
        target, value = entry.get("target"), str(entry.get("value", ""))
        if target == "ip":
            if "/" in value:
                try:
                    self.networks.append((ipaddress.ip_network(value, strict=False), entry))
                except ValueError:
                    return
            else:
                self.ips[value] = entry
        elif target == "account":
            self.accounts[value] = entry
        elif target == "fingerprint":
            self.fingerprints[value] = entry

    def match(self, ip: str, account: str | None, fingerprint: str | None) -> dict | None:
        entry = self.ips.get(ip)
        if entry is None and self.networks:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                addr = None
            if addr is not None:
                entry = next((e for net, e in self.networks if net.version == addr.version and addr in net), None)
        if entry is None and account:
            entry = self.accounts.get(account)
        if entry is None and fingerprint:
            entry = self.fingerprints.get(fingerprint)
        return entry


_NEVER = object()


def _live(entry: dict, now: float) -> bool:
    until = entry.get("until")
    return until is None or until > now


class SwitchBoard:
    """One process's view of the switches, refreshed from the store at most every `refresh_seconds`."""

    def __init__(self, store: Any, decision_log: Any = None, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.store = store
        self.decision_log = decision_log
        self.refresh_seconds = refresh_seconds
        self.under_attack: dict[str, dict] = {}
        self.lists = {name: _Lists() for name in LISTS}
        self.has_entries = False  # checked on every request: kept as a plain flag
        self._next_refresh = float("-inf")
        self._version: Any = _NEVER
        self._refreshing: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._listeners: list[Any] = []

    @property
    def next_refresh(self) -> float:
        """When `maybe_refresh` will next look at the store (the fast lane answers until then)."""
        return self._next_refresh

    def quiet(self, now: float) -> bool:
        """No allow/deny entry and no group under attack: requests pass the switches untouched."""
        return not self.has_entries and not any(_live(switch, now) for switch in self.under_attack.values())

    def on_change(self, listener: Any) -> None:
        """Call `listener()` whenever entries or attack switches change (the fast lane disarms)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def attack(self, group: str, now: float) -> dict | None:
        switch = self.under_attack.get(group)
        return switch if switch is not None and _live(switch, now) else None

    def match(self, ip: str, account: str | None, fingerprint: str | None, now: float) -> dict | None:
        """The list entry that applies to this client, deny before allow; None when unlisted."""
        for name in ("deny", "allow"):
            entry = self.lists[name].match(ip, account, fingerprint)
            if entry is not None and _live(entry, now):
                return entry
        return None


    def maybe_refresh(self, now: float) -> None:
        """Start a background refresh when the cache is older than `refresh_seconds` (never blocks)."""
        if now < self._next_refresh or (self._refreshing is not None and not self._refreshing.done()):
            return
        self._next_refresh = now + self.refresh_seconds
        self._refreshing = self._spawn(self.refresh(now, force=False))

    async def refresh(self, now: float, force: bool = True) -> None:
        """Reload switches and entries; unless forced, only when the store's version changed
        (one small read instead of listing every record every few seconds)."""
        version = await self.store.get_record(VERSION_KIND, VERSION_KEY, now)
        if not force and version == self._version:
            return
        self._version = version
        state = await current_state(self.store, now)
        lists = {name: _Lists() for name in LISTS}
        for entry in state["entries"]:
            if entry.get("list") in lists:
                lists[entry["list"]].add(entry)
        self.lists = lists
        self.has_entries = bool(state["entries"])
        self.under_attack = state["under_attack"]
        self._changed()

    def engage_automatically(self, group: str, now: float, hold_seconds: float, reason: str) -> bool:
        """A signal detected a mass attack: follow it here at once and persist it for the others.

        An operator's switch is never overridden; an automatic one is extended while the attack lasts.
        """
        current = self.attack(group, now)
        if current is not None and (not current.get("auto") or current.get("until", now) - now > hold_seconds / 2):
            return False
        newly = current is None
        self.under_attack[group] = {"group": group, "auto": True, "reason": reason, "since": now,
                                    "until": now + hold_seconds, "by": "shieldware"}
        self._changed()
        self._spawn(set_under_attack(self.store, self.decision_log if newly else None, group, True, now,
                                     hold_seconds, reason, by="shieldware", auto=True))
        return newly

    def _spawn(self, coroutine: Any) -> asyncio.Task | None:
        try:
            task = asyncio.get_running_loop().create_task(_logged(coroutine))
        except RuntimeError:  # no event loop (a synchronous caller): the store write is skipped
            coroutine.close()
            return None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _logged(coroutine: Any) -> None:
    try:
        await coroutine
    except StoreUnavailable as exc:  # expected while the store is down: one line, no traceback
        log.warning("switches not refreshed: %s", exc)
    except Exception:
        log.exception("switch store operation failed")


def switchboard_for(engine: Any) -> SwitchBoard:
    """The engine's one SwitchBoard, created on first use (signals and the admin endpoint share it)."""
    board = getattr(engine, "_shieldware_switchboard", None)
    if board is None:
        board = SwitchBoard(engine.store, engine.decision_log)
        engine._shieldware_switchboard = board
    return board


# ---- policy: who may flip switches over HTTP -------------------------------------------------------

DEFAULT_ADMIN_ALLOW = ("127.0.0.0/8", "::1/128")


def _parse_admin(raw: Any, where: str, check: Any) -> dict:
    raw = check.mapping(raw, where)
    check.unknown_keys(raw, ("allow_from", "enabled"), where)
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        check.fail(f"{where}.enabled", "true or false", enabled)
        enabled = True
    return {"enabled": enabled,
            "allow_from": check.networks(raw.get("allow_from", list(DEFAULT_ADMIN_ALLOW)), f"{where}.allow_from")}


def _default_admin() -> dict:
    return {"enabled": True, "allow_from": tuple(ipaddress.ip_network(n) for n in DEFAULT_ADMIN_ALLOW)}


def _register_admin_section() -> None:
    from shieldware.policy import register_section

    register_section("admin", _parse_admin, _default_admin)


_register_admin_section()
