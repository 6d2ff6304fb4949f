"""Outcome feedback plumbing: which requests are shop actions, and how their outcomes reach the engine.

A login, a payment, a coupon try only means something once we know how it ended. Outcomes
arrive three ways, and all three end as one ``engine.feedback(decision, now, event=, fields=)``:

1. **Status rules** per route group (``outcomes:`` in the policy): "a POST to /login answered
   401 or 403 is ``login_failed``", "a 200 carrying ``X-Login: failed`` is ``login_failed``".
   These also work for log replay, where the status is all we have.
2. **The app API**: ``request.state.shield.report("login_failed", account="alice")``.
3. **A response header** ``X-Shield-Event: login_failed; account=alice`` set by the app (or
   anything upstream of the proxy). The middleware reads it and strips it before the client
   sees it.

Explicit events (2 and 3) win over status rules: a status rule is skipped when the app
already reported an event of the same family (login, payment, coupon...) for that request.

Which requests are actions is the group field ``watch:`` (action → path globs, POST/PUT
only), and ``account_field:`` names the form or JSON field of a login request that holds the
account identifier. The middleware reads that one field from a small buffered copy of the
body and replays the body to the app unchanged; the password is never parsed into anything
that outlives the call, and never stored, logged or sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote_plus

from shieldware.facts import RequestFacts
from shieldware.policy import compile_globs, register_group_field

# ---- the event vocabulary -----------------------------------------------------------------------

EVENT_FAMILIES: dict[str, tuple[str, bool | None]] = {
    # event: (family, failed?)  — None means "neither" (an action happened, no verdict on it)
    "login_failed": ("login", True),
    "login_succeeded": ("login", False),
    "payment_declined": ("payment", True),
    "payment_succeeded": ("payment", False),
    "coupon_invalid": ("coupon", True),
    "coupon_applied": ("coupon", False),
    "giftcard_invalid": ("coupon", True),
    "giftcard_applied": ("coupon", False),
    "cart_add": ("cart", None),
    "signup": ("signup", None),
    "signup_failed": ("signup", True),
}
"""Events shieldware understands. Apps may report others; they are counted in metrics only."""

WATCHED_ACTIONS = ("login", "signup", "payment", "cart_add", "coupon")
MAX_EVENT_FIELD = 128
REPORTED_KEY = "events"  # decision.extra[REPORTED_KEY]: families the app reported explicitly


def event_family(event: str) -> tuple[str | None, bool | None]:
    return EVENT_FAMILIES.get(event, (None, None))


def mark_reported(decision: Any, event: str) -> None:
    """Remember, synchronously, that the app reported `event` so status rules stand aside."""
    family = EVENT_FAMILIES.get(event, (event, None))[0]
    reported = decision.extra.get(REPORTED_KEY)
    if reported is None:
        decision.extra[REPORTED_KEY] = [family]
    elif family not in reported:
        reported.append(family)


def was_reported(decision: Any, family: str) -> bool:
    return family in (decision.extra.get(REPORTED_KEY) or ())


# ---- X-Shield-Event ---------------------------------------------------------------------------

EVENT_HEADER = b"x-shield-event"
_EVENT_HEADER_LENGTH = len(EVENT_HEADER)
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_.]{0,47}\Z")


def parse_event_header(value: str) -> tuple[str, dict[str, str]] | None:
    """``"login_failed; account=alice"`` → ("login_failed", {"account": "alice"}); None if malformed.

    Field values may be percent-encoded (an account name with ``;`` or spaces).
    """
    name, *parts = value.split(";")
    name = name.strip().lower()
    if not _EVENT_NAME.match(name):
        return None
    fields: dict[str, str] = {}
    for part in parts[:8]:
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if sep and key.isidentifier() and key != "password":
            fields[key] = unquote_plus(raw.strip().strip('"'))[:MAX_EVENT_FIELD]
    return name, fields


def take_event_headers(message: MutableMapping[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """Remove X-Shield-Event headers from a response-start message; answer the events they carried."""
    headers = message.get("headers") or ()
    for name, _ in headers:  # the usual answer is none: compare lengths before case-folding
        if len(name) == _EVENT_HEADER_LENGTH and name.lower() == EVENT_HEADER:
            break
    else:
        return []
    events, kept = [], []
    for name, value in headers:
        if name.lower() == EVENT_HEADER:
            parsed = parse_event_header(value.decode("latin-1"))
            if parsed is not None:
                events.append(parsed)
        else:
            kept.append((name, value))
    message["headers"] = kept
    return events


async def tell_engine(engine: Any, decision: Any, now: float, events: Iterable[tuple[str, dict[str, str]]],
                      status: int | None, hear_status: bool = True,
                      response_headers: dict[str, str] | None = None) -> None:
    """How a response ended, told to the engine: the app's events first, marked as reported so the
    status rules of their family stand aside, then the status when its signals listen for it.

    The middleware calls this with what it watched in the response; forward auth's outcome feed
    with what the edge logged of it."""
    events = tuple(events)
    for event, _fields in events:
        mark_reported(decision, event)
    for event, fields in events:
        await engine.feedback(decision, now, event=event, fields=fields)
    if hear_status:
        await engine.feedback(decision, now, status=status,
                              fields={"response_headers": response_headers} if response_headers else None)


# ---- policy: watch, outcomes, account_field -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionWatch:
    """`watch:` of one group compiled to one regex: which POST/PUT paths are which shop action."""

    regex: re.Pattern | None
    actions: tuple[str, ...]

    def action_for(self, method: str, path: str) -> str | None:
        if self.regex is None or (method != "POST" and method != "PUT"):
            return None
        match = self.regex.match(path)
        return None if match is None else self.actions[int(match.lastgroup[1:])]


NO_WATCH = ActionWatch(None, ())


def _parse_watch(raw: Any, where: str, check: Any) -> ActionWatch:
    raw = check.mapping(raw, where)
    check.unknown_keys(raw, WATCHED_ACTIONS, where)
    patterns, actions = [], []
    for action in WATCHED_ACTIONS:
        for pattern in check.string_list(raw.get(action), f"{where}.{action}"):
            patterns.append(pattern)
            actions.append(action)
    if not patterns:
        return NO_WATCH
    return ActionWatch(compile_globs(patterns, name="a"), tuple(actions))


@dataclass(frozen=True, slots=True)
class OutcomeRule:
    """A response that means an event: status in `statuses`, optional method/path/header conditions."""

    event: str
    statuses: frozenset[int]
    methods: frozenset[str] | None = None
    paths: re.Pattern | None = None
    header: tuple[str, re.Pattern] | None = None

    def matches(self, method: str, path: str, status: int, headers: Any = None) -> bool:
        if status not in self.statuses:
            return False
        if self.methods is not None and method not in self.methods:
            return False
        if self.paths is not None and self.paths.match(path) is None:
            return False
        if self.header is not None:
            name, regex = self.header
            value = (headers or {}).get(name)
            if value is None or regex.search(value) is None:
                return False
        return True


def _parse_outcomes(raw: Any, where: str, check: Any) -> tuple[OutcomeRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        check.fail(where, "a list of outcome rules like {status: [401, 403], event: login_failed}", raw)
        return ()
    rules = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        item = check.mapping(item, at)
        check.unknown_keys(item, ("event", "status", "method", "path", "header"), at)
        event = item.get("event")
        if not isinstance(event, str) or not _EVENT_NAME.match(event):
            check.fail(f"{at}.event", "an event name such as login_failed or payment_declined", event)
            continue
        statuses = item.get("status")
        statuses = statuses if isinstance(statuses, list) else [statuses]
        if not statuses or not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599
                                   for s in statuses):
            check.fail(f"{at}.status", "an HTTP status or a list of them (e.g. [401, 403])", item.get("status"))
            continue
        methods = check.string_list(item.get("method"), f"{at}.method")
        paths = check.string_list(item.get("path"), f"{at}.path")
        header = None
        if "header" in item:
            spec = check.mapping(item["header"], f"{at}.header")
            if len(spec) != 1:
                check.fail(f"{at}.header", "one response header and a regex, e.g. {x-login: failed}", spec)
            else:
                (name, pattern), = spec.items()
                try:
                    header = (str(name).lower(), re.compile(str(pattern)))
                except re.error as exc:
                    check.fail(f"{at}.header.{name}", f"a valid regular expression ({exc})", pattern)
        rules.append(OutcomeRule(
            event=event, statuses=frozenset(statuses),
            methods=frozenset(m.upper() for m in methods) if methods else None,
            paths=compile_globs(paths) if paths else None,
            header=header))
    return tuple(rules)


def _parse_account_field(raw: Any, where: str, check: Any) -> tuple[str, ...]:
    names = check.string_list(raw, where)
    for name in names:
        if name.lower() in ("password", "passwd", "pass", "pwd"):
            check.fail(where, "the field holding the account name (never the password field)", name)
            return ()
    return names


register_group_field("watch", _parse_watch, lambda: NO_WATCH)
register_group_field("outcomes", _parse_outcomes, tuple)
register_group_field("account_field", _parse_account_field, tuple)


def action_of(facts: RequestFacts, group: Any) -> str | None:
    """The shop action this request performs (login, signup, payment, cart_add, coupon) or None."""
    return group.setting("watch").action_for(facts.method, facts.path)


def status_event(group: Any, method: str, path: str, status: int,
                 response_headers: dict[str, str] | None = None) -> str | None:
    """The event the group's `outcomes:` rules read into a response, or None."""
    for rule in group.setting("outcomes"):
        if rule.matches(method, path, status, response_headers):
            return rule.event
    return None


def header_rule_names(group: Any) -> frozenset[str]:
    """Response headers the group's outcome rules look at (so the middleware keeps only those)."""
    return frozenset(rule.header[0] for rule in group.setting("outcomes") if rule.header is not None)


# ---- the account field of a login request --------------------------------------------------------

MAX_CAPTURE_BYTES = 16 * 1024
"""Login forms are tiny; a larger body is passed through unread (no account taken from it)."""

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


def _field_from_form(body: bytes, names: tuple[str, ...]) -> str | None:
    # Scan name=value pairs and decode only the wanted one: the other values (the password)
    # are never decoded into strings.
    wanted = {n.encode() for n in names}
    for pair in body.split(b"&"):
        raw_name, sep, raw_value = pair.partition(b"=")
        if sep and unquote_plus(raw_name.decode("latin-1")).encode("latin-1", "replace") in wanted:
            return unquote_plus(raw_value.decode("latin-1"), encoding="utf-8", errors="replace")
    return None


def _field_from_json(body: bytes, names: tuple[str, ...]) -> str | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    for name in names:
        value = document.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    return None


def account_from_body(content_type: str, body: bytes, names: tuple[str, ...]) -> str | None:
    """The account identifier from a urlencoded or JSON login body, normalised; None if absent."""
    content_type = content_type.split(";", 1)[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        value = _field_from_form(body, names)
    elif content_type == "application/json" or content_type.endswith("+json"):
        value = _field_from_json(body, names)
    else:
        return None
    return normalise_account(value)


def normalise_account(value: Any) -> str | None:
    """Accounts are compared case-insensitively and trimmed, so "Alice " and "alice" are one key."""
    if value is None:
        return None
    text = str(value).strip().lower()[:MAX_EVENT_FIELD]
    return text or None


async def capture_account(facts: RequestFacts, group: Any, receive: Receive) -> tuple[RequestFacts, Receive]:
    """For a watched login/signup POST with `account_field:`, read the body (≤ MAX_CAPTURE_BYTES),
    put the account into ``facts.form_fields`` and return a `receive` that replays the body.

    Anything else — other requests, a body too large, a client that disconnects — passes
    through untouched; a body is never consumed without being replayed.
    """
    names = group.setting("account_field")
    if not names or action_of(facts, group) not in ("login", "signup"):
        return facts, receive
    declared = facts.header_map.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CAPTURE_BYTES:
        return facts, receive
    buffered: list[MutableMapping[str, Any]] = []
    size = 0
    more = True
    while more and size <= MAX_CAPTURE_BYTES:
        message = await receive()
        buffered.append(message)
        if message.get("type") != "http.request":
            break
        size += len(message.get("body", b""))
        more = bool(message.get("more_body"))
    account = None
    if not more and buffered and buffered[-1].get("type") == "http.request":
        body = b"".join(m.get("body", b"") for m in buffered)
        account = account_from_body(facts.header_map.get("content-type", ""), body, names)
        del body
    replay = iter(buffered)

    async def replaying_receive() -> MutableMapping[str, Any]:
        for message in replay:
            return message
        return await receive()

    if account is not None:
        facts = replace(facts, form_fields=(*facts.form_fields, ("account", account)))
    return facts, replaying_receive


def form_field(facts: RequestFacts, name: str) -> str | None:
    for key, value in facts.form_fields:
        if key == name:
            return value
    return None
