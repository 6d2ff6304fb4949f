"""FastLane: builds the compiled lane for one middleware and keeps it in step with the engine.

The lane answers a request only when nothing about it is new: its shape, address and route
group were planned by the engine, its cookies are ones the lane reads (the session id) or
none, no switch is set, and the window answers stay below every trigger. Everything else -
and every request when the extension is not compiled - takes the Python path unchanged.
"""

from __future__ import annotations

import logging
import os
import secrets
import struct
import threading
import weakref
from dataclasses import fields
from typing import Any

from shieldware import decision as decisions
from shieldware.decision import Decision, Verdict, head_lines, shield_headers
from shieldware.facts import CLIENT_IP_HEADERS, normalise_ip
from shieldware.fastlane.holds import FindingHolds
from shieldware.fastlane.plan import VALUE_FREE_HEADERS, PlanDraft, ShapeModel
from shieldware.fastlane.remote import RemoteRows
from shieldware.metrics import LATENCY_BUCKETS, Metrics
from shieldware.signals.traffic_keys import ip_prefix
from shieldware.store.base import MAX_STEP
from shieldware.store.memory import MemoryStore
from shieldware.switches import switchboard_for
from shieldware.windows import table as window_table
from shieldware.windows.layout import (
    EV_FLAGS,
    EV_FLOAT_WIDTH,
    EV_INT_WIDTH,
    EV_ITEM,
    EV_STEP,
    EV_TIME,
    OUT_FOLLOWS,
    OUT_WIDTH,
)
from shieldware.windows.table import WindowTable

log = logging.getLogger("shieldware.fastlane")

try:
    from shieldware.fastlane import _lane as native
except ImportError as exc:  # built without a C compiler: the Python path serves every request
    native = None
    _why_not_native = str(exc)

ENV_SWITCH = "SHIELDWARE_FAST_LANE"  # "0" turns the lane off (every request on the Python path)
DEFAULT_PLANS = 131072  # (shape, address, group) plans: two or three groups each for ~50,000 shoppers
DEFAULT_SHAPES = 4096
DEFAULT_TEMPLATES = 1024  # (shape, group) templates for plain addresses
ADDRESS, PREFIX = 0, 1  # recipe parts spelled from the client (the C file's PART_*)
MAX_MODELS = 4096  # (shape, group) models kept to draft new clients' plans from
# Names whose presence sends a request to Python: the middleware strips client-sent X-Shield-*.
BAIL_PREFIXES = decisions.SHIELD_HEADER_PREFIXES
MISS, FLAGGED, HELD, REMOTE = 0, 1, 2, 3  # the tags of decide()'s tuple answers
# Decision's fields in the order the C file fills their slots (its F_* values).
DECISION_FIELDS = ("ref", "verdict", "bot_score", "reasons", "route_group", "time", "client_ip", "method", "path",
                   "mode", "rule", "retry_after", "user_agent", "extra", "reporter", "header_lines")


def available() -> tuple[bool, str]:
    """Whether a lane can be built here, and if not, why (for the start-up message)."""
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return False, f"{ENV_SWITCH}=0"
    if native is None:
        return False, f"the compiled extension is missing ({_why_not_native})"
    return True, ""


def windows_are_shared(store: Any) -> bool:
    """The windows live in a shared store (Redis), not in this process's table: planned requests are
    observed there (shieldware/fastlane/remote.py, and the middleware's REMOTE answers)."""
    return type(store) is not MemoryStore


class FastLane:
    """The compiled lane of one middleware (see shieldware/fastlane/_lane.c for what it does)."""

    def __init__(self, native_lane: Any, engine: Any, board: Any) -> None:
        self.native = native_lane
        self.engine = engine
        self.board = board
        self._triggers_set: set[int] = set()
        self._group_index = {name: i for i, name in enumerate(_group_names(engine.policy))}
        self._pack: dict[int, tuple[struct.Struct, struct.Struct]] = {}
        self._models: dict[tuple[bytes, int], ShapeModel] = {}
        self.feedback_statuses: frozenset[int] = frozenset()  # statuses planned requests feed back
        self.derived = [0]  # requests planned on the spot from their shape's model (shared with the tally)
        # Flagged clients' assessments, held while the same findings fire (the signal whose
        # triggers flag requests says for how long).
        self.holds = FindingHolds(max((s.hold_findings_seconds for s in engine.signals
                                       if hasattr(s, "hold_findings_seconds")), default=0.0))
        self.tally = LaneTally(native_lane, self.derived, self.holds)
        self._off = False  # off for good (see off())
        self.remote = windows_are_shared(engine.store)
        self._finalizer: Any = None  # folds the last counts in when the lane goes (set by build)

    @classmethod
    def build(cls, middleware: Any, plans: int = DEFAULT_PLANS) -> FastLane | None:
        """The lane for `middleware`, or None (with the reason logged) when it cannot have one."""
        ok, why = available()
        if ok:
            try:
                return cls._build(middleware, plans)
            except (ValueError, TypeError) as exc:  # e.g. a cookie name longer than the lane reads
                ok, why = False, str(exc)
        # Said once per middleware: a missing extension is worth a warning, a choice (env, store) is not.
        (log.warning if native is None else log.info)("fast lane off: %s; every request takes the Python path", why)
        return None

    @classmethod
    def _build(cls, middleware: Any, plans: int) -> FastLane:
        from shieldware.windows.entry import observe_entry  # compiles the entry point on first use

        engine = middleware.engine
        policy = engine.policy
        remote = windows_are_shared(engine.store)
        # A shared store observes the windows itself; the kernel's table is then a token one it never runs on.
        table = WindowTable(capacity=1) if remote else engine.store.windows
        route_table = policy.route_table
        groups = [g for g in route_table.groups]
        if route_table.default_group not in groups:
            groups.append(route_table.default_group)
        session_cookies: list[str] = []
        absent_cookies: list[str] = []
        for signal in engine.signals:
            cookies = getattr(signal, "lane_cookies", None)
            if cookies is not None:
                session, absent = cookies(engine)
                session_cookies += [c for c in session if c not in session_cookies]
                absent_cookies += [c for c in absent if c not in absent_cookies]
        trusted = middleware.trusted
        v4 = [(int(n.network_address), int(n.netmask)) for n in trusted.networks if n.version == 4]
        native_lane = native.Lane(
            groups=[(g.methods, tuple(g.paths)) for g in groups],
            default_group=groups.index(route_table.default_group),
            value_free=tuple(sorted(name.encode() for name in VALUE_FREE_HEADERS)),
            bail_headers=(),
            bail_prefixes=BAIL_PREFIXES,
            bail_paths=middleware.endpoints,
            bail_path_prefix=middleware.prefix or "/.shieldware",
            has_trusted=bool(trusted),
            trusted_v4=v4,
            trusts=trusted.trusts,
            client_header=CLIENT_IP_HEADERS.index(trusted.header),
            normalise=normalise_ip,
            session_cookies=tuple(_cookie_name(c) for c in session_cookies),
            absent_cookies=tuple(_cookie_name(c) for c in absent_cookies),
            kernel=observe_entry(),
            keys=table.keys.ctypes.data,
            state=table.state.ctypes.data,
            registers=table.registers.ctypes.data,
            capacity=table.capacity,
            lock=table._lock,
            table=table,
            layout=(EV_INT_WIDTH, EV_FLOAT_WIDTH, OUT_WIDTH, EV_ITEM, EV_FLAGS, EV_STEP, EV_TIME, OUT_FOLLOWS,
                    MAX_STEP),
            plans=plans,
            shapes=DEFAULT_SHAPES,
            seed=secrets.randbits(64),
            decision_type=Decision,
            decision_slots=_decision_slots(),
            ref_counter=decisions._counter,
            ref_tag=decisions._process_tag,
            latency_bounds=LATENCY_BUCKETS,
            reporter=middleware._report,
            address=lane_address_of(engine),
            templates=DEFAULT_TEMPLATES,
        )
        board = switchboard_for(engine) if any(s.name == "switches" for s in engine.signals) else None
        native_lane.set_remote(remote)
        lane = cls(native_lane, engine, board)
        engine.on_forget_plans(lane.forget)
        # The process's metrics keep the tally (and the counts in it) after the lane is gone; what
        # the lane counted but was never read is folded in when the lane goes.
        engine.metrics.add_source(lane.tally)
        lane._finalizer = weakref.finalize(lane, lane.tally.last_drain, native_lane)
        window_table.on_item_hash_change(lane.off)
        if board is not None:
            board.on_change(native_lane.disarm)
        return lane

    # ---- after a request on the Python path -------------------------------------------------

    def derive(self, miss: tuple, now: float) -> bool:
        """A new client of a shape already planned in this group: draft and install its plan from
        the shape's model (True), without deciding the request on the Python path."""
        _, shape, client_ip, group = miss
        model = self._models.get((shape, group))
        if model is None:
            return False
        draft = self.engine.derive_plan(model, client_ip, now)
        if draft is None or not self.learn(miss, draft):
            return False
        self.derived[0] += 1
        return True

    def learn(self, miss: tuple, draft: PlanDraft) -> bool:
        """Install the plan the engine drafted for the request the lane missed (False: not
        installed; the request was decided on the Python path all the same)."""
        try:
            return self._install(miss, draft)
        except (ValueError, TypeError, OverflowError, struct.error):
            log.exception("fast lane: the plan for %s %s was not installed", draft.plan.method, draft.plan.route_group)
            return False

    def _install(self, miss: tuple, draft: PlanDraft) -> bool:
        _, shape, client_ip, group = miss
        plan, part = draft.plan, draft.part
        if client_ip != plan.client_ip or self._group_index.get(plan.route_group) != group:
            # The lane read this request differently from the engine: never answer it from a plan.
            log.error("fast lane and engine disagree on %s (%s, %s vs %s, %s); not planned",
                      draft.plan.method, client_ip, group, plan.client_ip, plan.route_group)
            return False
        if group not in self._triggers_set:
            self.native.set_triggers(group, [[(a.row, a.field, a.op, a.field2, a.value) for a in trigger]
                                             for trigger in part.triggers])
            self._triggers_set.add(group)
        ints, floats = window_table.rows_for(draft.observations, 0.0)
        iw = EV_INT_WIDTH
        if part.pid_row >= 0:
            row = part.pid_row * iw
            ints[row + EV_ITEM] = 0
            ints[row + EV_STEP] = 0
            ints[row + EV_FLAGS] &= ~part.pid_seen
        if part.step_row >= 0:
            row = part.step_row * iw
            ints[row + EV_STEP] = 0
            ints[row + EV_FLAGS] &= ~part.step_seen
        if part.session_row >= 0:
            row = part.session_row * iw
            ints[row + EV_ITEM] = 0
            ints[row + EV_FLAGS] &= ~(part.no_session_hits << 8)
        rows = len(draft.observations)
        packers = self._pack.get(rows)
        if packers is None:
            packers = self._pack[rows] = (struct.Struct(f"={rows * iw}q"), struct.Struct(f"={rows * EV_FLOAT_WIDTH}d"))
        # A plain decision (an allow the log does not keep) goes from the lane straight to the app.
        plain = plan.verdict is Verdict.ALLOW and not self.engine.decision_log.log_all
        score, verdict, _ = shield_headers(plan.bot_score, plan.verdict, "")
        # the app's headers, or its head lines (the reference completes both per request)
        for_app = (score, verdict, head_lines((score, verdict)) + b"x-shield-ref: ")
        template = _template(draft, client_ip) if draft.any_address else None
        if self.remote:
            spelled = {row: parts for row, _, parts in template[0]} if template is not None else None
            plan.remote = RemoteRows.of(draft.observations, part, client_ip, spelled)
        self.native.install(shape, client_ip, group, plan, packers[0].pack(*ints), packers[1].pack(*floats),
                            part.pid_row, part.pid_seen, part.session_row, part.no_session_hits,
                            part.step_row, part.step_seen,
                            draft.rule_globs or None, plain, for_app, *(template or ()))
        if not part.feedback_statuses <= self.feedback_statuses:
            self.feedback_statuses |= part.feedback_statuses
            self.native.set_hear_on(self.feedback_statuses)
        if draft.model is not None and (shape, group) not in self._models:
            if len(self._models) >= MAX_MODELS:
                self._models.clear()
            self._models[(shape, group)] = draft.model
        return True

    def by_group(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """`values` by route group name, as a tuple in the lane's order of the groups (None for a
        group not named)."""
        return tuple(values.get(name) for name in self._group_index)

    def forget(self) -> None:
        """Plans and models no longer hold (the engine said so): make them afresh."""
        self.native.clear()
        self._models.clear()
        self.holds.clear()

    def rearm(self, now: float) -> None:
        """After a request on the Python path, and when the switchboard's refresh falls due (the
        front door calls it then): start the refresh, and answer again while the switchboard stays
        quiet, until its next look at the store (a refresh under way disarms the lane itself if it
        finds a change)."""
        if self._off:
            return
        board = self.board
        if board is None:
            self.native.arm(float("inf"))
            return
        board.maybe_refresh(now)
        if board.quiet(now):
            due = board.next_refresh
            self.native.arm(due if due > now else now + board.refresh_seconds)
        else:
            self.native.disarm()

    def off(self) -> None:
        """Stop answering for good (item hashing changed under the lane's plans)."""
        self._off = True
        self.native.disarm()
        self.forget()

    def counts(self) -> dict[str, int]:
        return self.native.counts()

    def retire(self) -> None:
        """Its middleware was replaced (the proxy reloaded its policy): answer nothing more, fold
        what it counted into the metrics now, and let go of its tables, which the finalizer's
        reference would otherwise keep as long as the process lives."""
        self.off()
        self._finalizer()


class LaneTally:
    """The lane's decisions as metrics: it counts per plan in C, and they are folded into
    decision, reason, score and latency counters here whenever the metrics are read (a scrape,
    or a worker's snapshot). Read from any thread."""

    def __init__(self, native_lane: Any, derived: list[int], holds: FindingHolds) -> None:
        self._lane = weakref.ref(native_lane)
        self._derived = derived
        self._holds = holds
        self.totals = Metrics()
        self._lock = threading.Lock()
        self._outcomes: dict[str, int] = {}  # the lane's cumulative outcome counts when last folded
        self._ahead = 0  # and of the requests it served decided ahead (the proxy's server)

    def __call__(self) -> Metrics:
        native_lane = self._lane()
        with self._lock:
            if native_lane is not None:
                self._fold(native_lane.drain(), native_lane.counts())
            return Metrics.from_snapshot(self.totals.snapshot())

    @property
    def finished(self) -> bool:
        """The lane is gone and never decided anything: the metrics can forget this tally."""
        return self._lane() is None and not self.totals.decisions

    def last_drain(self, native_lane: Any) -> None:
        with self._lock:
            self._fold(native_lane.drain(), native_lane.counts())

    def _fold(self, drained: tuple, outcomes: dict[str, int]) -> None:
        plans, latency, latency_sum = drained
        totals = self.totals
        # A request of a new client of a known shape whose address a signal knows is a miss, then
        # (planned on the spot in Python) a hit: counted once, as "derived". One with a plain
        # address is planned in C from its shape's template: "made".
        # A flagged request answered from a held assessment is counted as "held".
        derived, held = self._derived[0], self._holds.answered
        outcomes = dict(outcomes)
        ahead = outcomes.pop("ahead", 0)  # not an outcome: a request decided ahead has one of its own
        if ahead > self._ahead:
            totals.add_count("fast_lane_decided_ahead", ahead - self._ahead, {})
            self._ahead = ahead
        outcomes = {**outcomes, "derived": derived, "hit": outcomes["hit"] - derived,
                    "miss": outcomes["miss"] - derived, "held": held, "flagged": outcomes["flagged"] - held}
        for outcome, n in outcomes.items():  # how requests met the lane: hit, miss, flagged, ...
            more = n - self._outcomes.get(outcome, 0)
            if more:
                totals.add_count("fast_lane_requests", more, {"outcome": outcome})
        self._outcomes = outcomes
        for plan, n in plans:
            action = plan.verdict if plan.mode == "enforce" else Verdict.ALLOW
            totals.count_decisions(plan.verdict, action, plan.route_group, plan.bot_score, plan.reasons, n)
        totals.add_latencies(latency, latency_sum)


def lane_address_of(engine: Any) -> Any:
    """The lane's question on a new client of a planned shape: its network prefix when the
    address is plain (no signal has anything to say of it), else None (Python plans it)."""

    def address(client_ip: str) -> str | None:
        return ip_prefix(client_ip) if engine.address_is_plain(client_ip) else None

    return address


def _spelled(key: str, client_ip: str, prefix: str) -> tuple[str | int, ...] | None:
    """A window key as literal text around the address or its prefix (the prefix first: an
    address ending in .0 is a piece of its own /24); None when it holds neither, or either twice."""
    for text, part in ((prefix, PREFIX), (client_ip, ADDRESS)):
        at = key.find(text)
        if at < 0:
            continue
        head, tail = key[:at], key[at + len(text):]
        if client_ip in tail or prefix in tail:
            return None
        return (*((head,) if head else ()), part, *((tail,) if tail else ()))
    return None


def _template(draft: PlanDraft, client_ip: str) -> tuple | None:
    """install()'s template arguments: how each address row's key is spelled, the items that are
    the address, the IPv4 networks a rule names and whether it names IPv6 ones; None when the
    observations do not read as the part says (the plan then stays this address's own)."""
    prefix = ip_prefix(client_ip)
    part = draft.part
    recipes = []
    for row, observation in enumerate(draft.observations):
        if row in part.address_rows:
            parts = _spelled(observation.key, client_ip, prefix)
            if parts is None:
                return None
            recipes.append((row, observation.kind, parts))
        elif client_ip in observation.key or prefix in observation.key:
            return None  # spelled from the address, but not declared so: it would be kept as it is
    items = []
    for row, sketch in part.address_items:
        distinct = draft.observations[row].distinct
        if sketch >= len(distinct) or distinct[sketch] != client_ip:
            return None
        items.append((row, EV_ITEM + sketch))
    excluded = [(int(n.network_address), int(n.netmask)) for n in draft.excluded if n.version == 4]
    if len(recipes) > 8 or len(excluded) > 16:
        return None
    return tuple(recipes), tuple(items), tuple(excluded), any(n.version == 6 for n in draft.excluded)


def _decision_slots() -> tuple[Any, ...]:
    """The slots (member descriptors) of Decision's fields, in DECISION_FIELDS order; the lane
    refuses anything else, so a Decision that stops being a slots class turns the lane off."""
    names = {f.name for f in fields(Decision)}
    if set(DECISION_FIELDS) != names:
        raise TypeError(f"Decision's fields changed ({sorted(names ^ set(DECISION_FIELDS))}): the lane fills them")
    return tuple(Decision.__dict__[name] for name in DECISION_FIELDS)


def _group_names(policy: Any) -> list[str]:
    names = [g.name for g in policy.route_table.groups]
    default = policy.route_table.default_group.name
    if default not in names:
        names.append(default)
    return names


def _cookie_name(name: str) -> bytes:
    raw = name.encode("latin-1", "replace")
    if len(raw) >= 40:
        raise ValueError(f"cookie name {name[:60]!r} is longer than the fast lane reads (39 bytes)")
    return raw


__all__ = ["FLAGGED", "HELD", "MISS", "FastLane", "available"]
