"""Plans: what the engine concluded for one (request shape, client address, route group), kept for the lane.

A plan is made on the Python path, from the very inspection that decided the request: the
evidence and attributes of the signals that read only the shape and the address, the verdict
they lead to while the windows stay quiet, and the window rows the traffic signal observes with
the places a request fills in (its time, product id and session).

How a signal takes part (one that declares nothing keeps its route group on the Python path):

* `lane = "shape"` (class attribute): `inspect` depends only on the request's shape and route
  group (and its notes being empty); it never queues observations and has no `assess`. Its
  findings are recorded once per shape and replayed for every new client of that shape.
* `lane = "address"`: the same, but it also reads the client address (it runs again for each new
  client), and answers `lane_address(client_ip) -> bool`: True when it has nothing to say of that
  address (plans of a plain address serve every plain address).
* `lane_part(facts, inspection) -> LanePart | None`: called after the request's inspection; None
  when this request cannot be planned (the signal is doing per-request work, e.g. a clearance
  cookie to verify), else its holes, triggers and feedback statuses (an idle signal answers IDLE).
* `lane_cookies(engine) -> (session_cookies, absent_cookies)` (optional): cookies the lane reads a
  session id from, and cookies whose presence sends a request to the Python path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from shieldware.decision import Verdict
from shieldware.evidence import Evidence

# Trigger atom operators (the C file's OP_* values, in the same order).
GE, LE, GT, LT, INT_GE, CV_LT, PRODUCT_GE = range(7)


class Atom(NamedTuple):
    """One comparison on a window answer: `stats[row][field] <op> value`.

    INT_GE truncates the field first (`int(x) >= value`); CV_LT reads `field` as a mean and
    `field2` as its standard deviation (`mean > 0 and std / mean < value`); PRODUCT_GE compares
    `stats[row][field] * stats[row][field2]`.
    """

    row: int
    field: int
    op: int
    value: float
    field2: int = 0


Trigger = tuple[Atom, ...]
"""A conjunction: the trigger fires when every atom holds."""


@dataclass(frozen=True, slots=True)
class LanePart:
    """What a window-reading signal adds to a plan: the per-request places in its observations
    (rows are indexes into `inspection.observations`; -1 for none) and the triggers under which
    its `assess` would add evidence or a demand. `feedback_statuses`: response statuses its
    `feedback` acts on (other statuses skip feedback on the lane)."""

    pid_row: int = -1
    pid_seen: int = 0
    session_row: int = -1
    no_session_hits: int = 0
    # Another row that keeps the product id as its step (no item), with `step_seen` its ratio bits.
    step_row: int = -1
    step_seen: int = 0
    triggers: tuple[Trigger, ...] = ()
    feedback_statuses: frozenset[int] = frozenset()
    # Rows whose window keys are spelled from the client address or its network prefix, and the
    # (row, sketch) items that are the address: the lane spells them anew for each plain address.
    address_rows: tuple[int, ...] = ()
    address_items: tuple[tuple[int, int], ...] = ()


IDLE = LanePart()
"""The part of a signal with nothing to do for the request (it adds no hole, trigger or status)."""


@dataclass(frozen=True, slots=True)
class PlanSeed:
    """The inspection a plan was drafted from, as it stood before the windows were assessed:
    when the lane's windows cross a trigger, the engine assesses them from here (every plain
    address of a shape shares one; nothing in it depends on the address)."""

    facts: Any
    group: Any
    evidence: tuple[Evidence, ...]
    attrs: dict[str, Any]
    demands: tuple[Any, ...]
    observations: tuple[Any, ...]


@dataclass(slots=True)
class Plan:
    """The decision for every quiet request of one (shape, address, group): only the reference,
    the time and the path change from one to the next (the lane makes each Decision from these
    fields)."""

    verdict: Verdict
    bot_score: float
    reasons: tuple[Evidence, ...]
    route_group: str
    client_ip: str
    method: str
    user_agent: str
    mode: str
    rule: str | None = None
    retry_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    feedback_statuses: frozenset[int] = frozenset()
    seed: PlanSeed | None = None
    # With a shared store (Redis), the observations the store is asked for (fastlane/remote.py).
    remote: Any = None


@dataclass(slots=True)
class PlanDraft:
    """A plan with what the lane needs to install it: the request's observations (as the window
    rows it will fill per request), its holes, triggers and the rule paths that must stay Python's."""

    plan: Plan
    observations: list[Any]
    part: LanePart
    rule_globs: tuple[str, ...] = ()
    model: ShapeModel | None = None
    # For every plain address of the shape (no signal says anything of it), with `excluded`:
    # the networks a policy rule names, whose addresses need a plan of their own.
    any_address: bool = False
    excluded: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class ShapeModel:
    """What one shape's requests in one route group showed the signals that read only the shape:
    enough to draft the plan of a new client of that shape without its whole inspection
    (`Engine.derive_plan`). `recorded`: per such signal, the evidence it added and the
    attributes it set."""

    facts: Any
    group: Any
    recorded: dict[Any, tuple[tuple[Evidence, ...], dict[str, Any]]]


VALUE_FREE_HEADERS = frozenset({
    # Headers whose values change from request to request of one client while no signal's static
    # reading depends on them: a shape keeps their names (order and presence), not their values.
    # The cookie reaches signals through the lane's cookie reading (session id, excluded cookies),
    # the forwarding headers through the client address a plan is keyed by.
    "cookie", "referer", "x-forwarded-for", "x-real-ip", "sec-fetch-site", "if-none-match", "if-modified-since",
    "content-length", "cache-control", "pragma", "priority", "x-request-id", "traceparent", "tracestate",
    "x-amzn-trace-id",
})
