"""Traffic signals: hard rate limits per route group, and behaviour over time read from the windows.

One request queues its observations (IP, IP prefix, fingerprint, IP+fingerprint, session,
account, and one rate key per limited identity) for the engine's single store call, then
judges the answers in `assess`. Outcomes come back through `feedback`: 4xx answers feed the
probing ratio, served product pages that follow the previous id feed the sequential-walk ratio
(one store write, only for such steps).

Ratio channels and sketches per key kind (the convention the store protocol leaves to us):

* ``ip``: counters and timing count pages (not assets); channel 0 = answered
  401/403/404/405/410 (fed back), 1 = static asset, 2 = product page next to one seen just
  before (fed back), 3 = listing/search page;
  sketch 0 = distinct product ids, sketch 1 = distinct user agents; timing = page requests;
  step = the product id: `follows` says the previous id was among the IP's last product pages
  of this visit, which makes the page a sequential step, fed back once the page was served.
* ``client`` (IP + fingerprint), pages only: channel 0 = no session cookie, 1 = no Referer;
  sketch 0 = distinct session ids.
* ``net`` (/24 or /64), pages only: sketch 0 = distinct client IPs.
* ``stack`` (the client software's fingerprint), live product pages sent without a session cookie:
  channel 0 = the page's id follows one this stack fetched just before, up to WALK_STEP_GAP ids
  below it (the store counts it in the same call: ``follow_hits``), whatever the address;
  sketch 0 = distinct client IPs; step = the product id. A catalogue walked in id order from
  rotating addresses, each sending a request or two and never the session cookie, shows here and
  nowhere else: per address there is nothing to see. Session-less landings of people sharing the
  stack land on ids at random.
* ``session`` and ``account``: sketch 0 = distinct client IPs.
"""

from __future__ import annotations

from typing import Any

from shieldware.decision import Verdict
from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.fastlane.plan import CV_LT, GE, GT, INT_GE, LE, PRODUCT_GE, Atom, LanePart, Trigger
from shieldware.policy import register_attribute
from shieldware.signals.base import Inspection
from shieldware.signals.traffic_keys import header_fingerprint, ip_prefix, product_id
from shieldware.signals.traffic_policy import LIMIT_KEYS, TrafficSettings, watches_product_ids
from shieldware.store.base import MAX_LIMITS, Observation, Rate
from shieldware.windows.layout import (
    N_HALF_LIVES,
    OUT_DISTINCT,
    OUT_FOLLOWS,
    OUT_GAPS,
    OUT_MEAN,
    OUT_RATIO,
    OUT_RETRY,
    OUT_STD,
    OUT_WEIGHT,
)

PROBE, ASSET, SEQUENTIAL, LISTING = 1, 2, 4, 8          # ip key channels (bits)
NO_COOKIE, NO_REFERER = 1, 2                           # client key channels (bits)
PROBE_CH, ASSET_CH, SEQUENTIAL_CH, LISTING_CH = 0, 1, 2, 3
NO_COOKIE_CH, NO_REFERER_CH = 0, 1
WALK, WALK_CH = 1, 0                                   # stack key channel: a step that follows
# A stack's step may follow an id up to this far below it: a scraper that skips an id now and then,
# or whose addresses each fetch two or three pages (the later ones with the session cookie the
# first earned, so the stack sees every second or third id), still steps forward.
WALK_STEP_GAP = 3
SHORT, LONG = 0, 1                                     # ratio half-life indexes (60 s, 30 min)
_PENDING_LIMIT = 65536
PROBE_STATUSES = frozenset({401, 403, 404, 405, 410})
STATIC_GROUP = "static"
LISTING_GROUPS = frozenset({"search", "browse"})

for _per in LIMIT_KEYS:
    register_reason(f"rate.{_per}.limit", 20, f"The {_per.replace('ip', 'client IP')} went over a hard rate "
                    "limit of this route group; the request is answered 429 with Retry-After.")
register_reason("rate.ip.burst", 25, "Many page requests from one IP within ten seconds, more than a person "
                "clicks through.")
register_reason("rate.ip.sustained", 30, "A steady high page rate from one IP over ten minutes.")
register_reason("rate.prefix.sustained", 30, "A high page rate over ten minutes from many addresses of one "
                "/24 (IPv4) or /64 (IPv6) network: one operator rotating addresses.")
register_reason("behav.regular_timing", 35, "The gaps between page requests are machine-regular (low "
                "coefficient of variation over many requests).")
register_reason("behav.enumeration", 40, "The client walks product pages in id order, or sweeps many "
                "distinct products without ever using listing or search pages.")
register_reason("behav.probing", 45, "Many requests answered 401/403/404/405/410 in the last minutes: "
                "probing for pages that do not exist or are not allowed.")
register_reason("behav.no_assets", 30, "Many pages and no stylesheets, scripts or images: a browser would "
                "have loaded them.")
register_reason("behav.distributed_walk", 55, "Product pages in id order from one client software over "
                "many addresses, none sending the session cookie: a catalogue scraped through rotating proxies. This "
                "page follows the one fetched just before; a browser passes the challenge.")
register_reason("behav.cookie_amnesia", 35, "Page after page from one IP and client software without the "
                "session cookie the shop sets: the client throws its cookies away.")
register_attribute("traffic.fingerprint", "the client-software key the traffic signals used (the header "
                   "signal's fingerprint, or a header-order hash when there is none)")


def _observation(kind: str, key: str, count: float = 1.0, timing: bool = False, distinct: tuple = (),
                 seen: int = 0, hits: int = 0, limits: tuple = (), step: int | None = None,
                 follow_hits: int = 0, step_gap: int = 1) -> Observation:
    """An Observation built without NamedTuple's keyword-parsing __new__ (several per request)."""
    return _new_tuple(Observation, (kind, key, count, timing, distinct, seen, hits, limits, step, follow_hits,
                                    step_gap))


_new_tuple = tuple.__new__


class TrafficSignal:
    """Rate limits and behaviour-over-time evidence. One instance serves one engine."""

    name = "traffic"

    def __init__(self) -> None:
        self._store: Any = None
        self._settings = TrafficSettings()
        self._limit_plans: dict[str, tuple[tuple[str, int, tuple[Rate, ...]], ...]] = {}
        # Product pages found to follow the previous id, waiting for their response status.
        # Request and feedback run in the same process, so a set here is enough.
        self._pending_steps: set[tuple[str, str, float]] = set()
        self._lane_parts: dict[tuple[str, int, int], LanePart | None] = {}  # per group and row layout

    def bind(self, engine: Any) -> None:
        self._store = engine.store
        self._settings = engine.policy.section("traffic")
        self._lane_parts.clear()

    @property
    def hold_findings_seconds(self) -> float:
        """How long the lane may hold a flagged client's assessment while the same triggers fire
        (shieldware/fastlane/holds.py): the triggers are this signal's findings."""
        return float(self._settings.hold_findings_s)

    # ---- before the store call ------------------------------------------------------------

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        group = inspection.group
        static = group.name == STATIC_GROUP
        ip = facts.client_ip
        attrs = inspection.attrs
        fingerprint = attrs.get("fingerprint") or header_fingerprint(facts)
        attrs["traffic.fingerprint"] = fingerprint
        ids = watches_product_ids(group)
        pid = product_id(facts.path) if ids else None
        observations = inspection.observations
        add = observations.append
        first = len(observations)
        session = self._session_id(facts)
        prefix = ip_prefix(ip)
        if static:
            # Assets do not count as requests on the IP key: its counters and timing are pages.
            add(_observation("ip", ip, 0.0, False, (), PROBE | ASSET, ASSET))
        else:
            seen = PROBE | ASSET | LISTING | (SEQUENTIAL if pid is not None else 0)
            hits = LISTING if group.name in LISTING_GROUPS else 0
            # step = the product id: the store answers whether the previous id was among this
            # IP's last product pages (a sequential walk), without a key per page.
            add(_observation("ip", ip, 1.0, True, (None if pid is None else str(pid), facts.user_agent),
                             seen, hits, (), pid))
            hits = (0 if session else NO_COOKIE) | (0 if "referer" in facts.header_map else NO_REFERER)
            add(_observation("client", f"{ip}|{fingerprint}", 1.0, False, (session,), NO_COOKIE | NO_REFERER,
                             hits))
            add(_observation("net", prefix, 1.0, False, (ip,)))
        limits_at = len(observations)
        plan = self._limits_of(group)
        if plan:
            identities = {"ip": ip, "prefix": prefix, "fingerprint": fingerprint,
                          "session": session, "account": attrs.get("account")}
            for per, chunk, rates in plan:
                value = identities.get(per)
                if value:
                    add(_observation(f"rate.{per}", f"{group.name}|{chunk}|{value}", limits=rates))
        walk_at = len(observations)
        # Last, so that the rows before it keep their places with a session or without (the lane
        # plans the two apart). Other cookies count as none: a consent or tracking cookie costs a
        # scraper nothing to send. A shop that names no session cookie has only "no Cookie header"
        # to go by. A log line never says whether a cookie was sent.
        if (ids and session is None and facts.source == "live"
                and (self._settings.session_cookies or "cookie" not in facts.header_map)):
            add(_observation("stack", fingerprint, 1.0, False, (ip,), 0 if pid is None else WALK, 0, (), pid, WALK,
                             WALK_STEP_GAP))
        # Where this signal's observations sit in the request's list: (ip, limits, stack, end).
        attrs["traffic.at"] = (first, limits_at, walk_at, len(observations))

    def _session_id(self, facts: RequestFacts) -> str | None:
        cookies = facts.cookies
        if not cookies:
            return None
        for name in self._settings.session_cookies:
            value = cookies.get(name)
            if value:
                return value[:128]
        return None

    def _limits_of(self, group: Any) -> tuple[tuple[str, int, tuple[Rate, ...]], ...]:
        plan = self._limit_plans.get(group.name)
        if plan is None:
            limits = group.setting("limits") or {}
            plan = tuple((per, i, rates[i:i + MAX_LIMITS]) for per, rates in limits.items()
                         for i in range(0, len(rates), MAX_LIMITS))
            self._limit_plans[group.name] = plan
        return plan

    # ---- after the store call -------------------------------------------------------------

    def assess(self, facts: RequestFacts, inspection: Inspection) -> None:
        stats = inspection.stats
        at = inspection.attrs.get("traffic.at")
        if not stats or at is None:
            return
        first, limits_at, walk_at, end = at
        self._assess_limits(inspection, stats, limits_at, walk_at)
        ip_stats = stats[first]
        if inspection.group.name == STATIC_GROUP:
            return
        settings = self._settings
        self._assess_rate(inspection, ip_stats, settings)
        self._assess_timing(inspection, ip_stats, settings)
        self._assess_enumeration(inspection, ip_stats, settings)
        self._assess_probing(inspection, ip_stats, settings)
        if settings.assets_through_shieldware:
            self._assess_assets(inspection, ip_stats, settings)
        self._assess_amnesia(inspection, stats[first + 1], settings)
        self._assess_prefix(inspection, stats[first + 2], settings, ip_prefix(facts.client_ip))
        if end > walk_at:
            self._assess_walk(inspection, stats[walk_at], settings)
        if ip_stats.follows:
            self._remember_step(facts)

    def _assess_limits(self, inspection: Inspection, stats: list, start: int, end: int) -> None:
        for index in range(start, end):
            wait = stats[index].retry_after
            if wait > 0.0:
                observation = inspection.observations[index]
                per = observation.kind.split(".", 1)[1]
                inspection.add(f"rate.{per}.limit", group=inspection.group.name,
                               limits=[str(r) for r in observation.limits], retry_after=round(wait, 3))
                inspection.demand(Verdict.THROTTLE, wait)

    def _assess_rate(self, inspection: Inspection, ip_stats: Any, settings: TrafficSettings) -> None:
        if ip_stats.count(0) >= settings.burst_pages_10s:
            inspection.add("rate.ip.burst", requests_10s=round(ip_stats.count(0), 1))
        if ip_stats.count(2) >= settings.sustained_pages_10min:
            inspection.add("rate.ip.sustained", requests_10min=round(ip_stats.count(2), 1))

    def _assess_timing(self, inspection: Inspection, ip_stats: Any, settings: TrafficSettings) -> None:
        if ip_stats.gaps < settings.regular_min_gaps:
            return
        cv = ip_stats.gap_cv(0)
        if cv is not None and cv < settings.regular_max_cv:
            inspection.add("behav.regular_timing", gaps=ip_stats.gaps, cv=round(cv, 3),
                           mean_gap_s=round(ip_stats.gap_mean(0), 3))

    def _assess_enumeration(self, inspection: Inspection, ip_stats: Any, settings: TrafficSettings) -> None:
        product_pages = ip_stats.ratio_weight(SEQUENTIAL_CH, LONG)
        sequential = ip_stats.ratio(SEQUENTIAL_CH, LONG)
        if (product_pages >= settings.enumeration_min_products
                and sequential >= settings.enumeration_min_sequential):
            inspection.add("behav.enumeration", pattern="sequential ids",
                           product_pages=round(product_pages, 1), sequential_share=round(sequential, 2))
            return
        distinct = ip_stats.distinct(0)
        listing = ip_stats.ratio(LISTING_CH, LONG)
        if distinct >= settings.sweep_min_distinct and listing <= settings.sweep_max_listing_share:
            inspection.add("behav.enumeration", pattern="products without listing or search",
                           distinct_products=round(distinct), listing_share=round(listing, 2))

    def _assess_probing(self, inspection: Inspection, ip_stats: Any, settings: TrafficSettings) -> None:
        share = ip_stats.ratio(PROBE_CH, SHORT)
        errors = share * ip_stats.ratio_weight(PROBE_CH, SHORT)
        if errors >= settings.probing_min_errors and share >= settings.probing_min_share:
            inspection.add("behav.probing", recent_errors=round(errors, 1), error_share=round(share, 2))

    def _assess_assets(self, inspection: Inspection, ip_stats: Any, settings: TrafficSettings) -> None:
        pages = ip_stats.ratio_weight(LISTING_CH, LONG)  # every page feeds the listing channel's denominator
        share = ip_stats.ratio(ASSET_CH, LONG)
        if pages >= settings.no_assets_min_pages and share <= settings.no_assets_max_share:
            inspection.add("behav.no_assets", pages=round(pages, 1), asset_share=round(share, 3))

    def _assess_amnesia(self, inspection: Inspection, client_stats: Any, settings: TrafficSettings) -> None:
        if not settings.session_cookies:
            return
        pages = client_stats.ratio_weight(NO_COOKIE_CH, LONG)
        share = client_stats.ratio(NO_COOKIE_CH, LONG)
        if pages >= settings.amnesia_min_pages and share >= settings.amnesia_min_share:
            inspection.add("behav.cookie_amnesia", pages=round(pages, 1),
                           without_cookie_share=round(share, 2),
                           distinct_sessions=round(client_stats.distinct(0)))

    def _assess_prefix(self, inspection: Inspection, net_stats: Any, settings: TrafficSettings, prefix: str) -> None:
        ips = net_stats.distinct(0)
        pages = net_stats.count(2)
        if pages >= settings.prefix_pages_10min and ips >= settings.prefix_min_ips:
            inspection.add("rate.prefix.sustained", pages_10min=round(pages), distinct_ips=round(ips),
                           prefix=prefix)

    def _assess_walk(self, inspection: Inspection, stack_stats: Any, settings: TrafficSettings) -> None:
        pages = stack_stats.ratio_weight(WALK_CH, LONG)
        share = stack_stats.ratio(WALK_CH, LONG)
        ips = stack_stats.distinct(0)
        if (stack_stats.follows and pages >= settings.walk_min_pages and share >= settings.walk_min_sequential
                and ips >= settings.walk_min_addresses):
            inspection.add("behav.distributed_walk", product_pages=round(pages, 1), sequential_share=round(share, 2),
                           distinct_ips=round(ips), fingerprint=inspection.attrs.get("traffic.fingerprint"))

    def _remember_step(self, facts: RequestFacts) -> None:
        self.remember_step(facts.client_ip, facts.path, facts.now)

    def remember_step(self, client_ip: str, path: str, now: float) -> None:
        """A sequential step is counted once the page is actually served (in `feedback`)."""
        if len(self._pending_steps) >= _PENDING_LIMIT:
            self._pending_steps.clear()  # feedback never came for these (refused requests)
        self._pending_steps.add((client_ip, path, now))

    # ---- the fast lane ----------------------------------------------------------------------

    def lane_cookies(self, engine: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(self._settings.session_cookies), ()

    def lane_part(self, facts: RequestFacts, inspection: Inspection) -> LanePart | None:
        """Where this request's observations change from one request of its plan to the next (the
        product id on the ip row, the session on the client row) and when `assess` would speak."""
        at = inspection.attrs.get("traffic.at")
        if at is None:
            return None
        first, limits_at, walk_at, end = at
        group = inspection.group
        if first != 0 or end != len(inspection.observations):
            return None  # another signal observes too: the lane fills only traffic's rows
        key = (group.name, limits_at, walk_at, end)
        part = self._lane_parts.get(key)
        if part is None:
            part = self._lane_parts[key] = self._lane_part(group, first, limits_at, walk_at, end)
        return part

    def _lane_part(self, group: Any, first: int, limits_at: int, walk_at: int, end: int) -> LanePart | None:
        if any(per in ("session", "account") for per, _, _ in self._limits_of(group)):
            return None  # rate keys that change per request
        # Rate keys per ip or prefix are spelled from the address; per fingerprint, from the shape.
        rate_rows = tuple(limits_at + i for i, (per, _, _) in enumerate(self._limits_of(group))
                          if per in ("ip", "prefix"))
        if group.name == STATIC_GROUP:
            return LanePart(triggers=self.lane_triggers(True, first, limits_at, walk_at),
                            feedback_statuses=PROBE_STATUSES, address_rows=(first, *rate_rows))
        stack = walk_at if end > walk_at else -1
        return LanePart(
            pid_row=first if watches_product_ids(group) else -1, pid_seen=SEQUENTIAL,
            session_row=first + 1, no_session_hits=NO_COOKIE,
            step_row=stack, step_seen=WALK if stack >= 0 else 0,
            triggers=self.lane_triggers(False, first, limits_at, walk_at, watches_product_ids(group)),
            feedback_statuses=PROBE_STATUSES,
            # ip, ip|fingerprint, prefix (whose sketch counts the address) and the rate keys; the
            # stack's key is the shape's, its sketch counts the address
            address_rows=(first, first + 1, first + 2, *rate_rows),
            address_items=((first + 2, 0), *(((stack, 0),) if stack >= 0 else ())))

    def lane_triggers(self, static: bool, first: int, limits_at: int, walk_at: int,
                      walks: bool = False) -> tuple[Trigger, ...]:
        """`assess` above as data: one trigger per finding, firing exactly when that finding (or a
        rate-limit demand) would be added. Kept next to `assess` so both change together; the
        tests hold the two to each other on random window answers."""
        s = self._settings
        triggers: list[Trigger] = [(Atom(row, OUT_RETRY, GT, 0.0),) for row in range(limits_at, walk_at)]
        if static:
            return tuple(triggers)
        ip, client, net = first, first + 1, first + 2

        def ratio(channel: int, half_life: int) -> int:
            return OUT_RATIO + channel * N_HALF_LIVES + half_life

        def weight(channel: int, half_life: int) -> int:
            return OUT_WEIGHT + channel * N_HALF_LIVES + half_life

        triggers += [
            (Atom(ip, 0, GE, float(s.burst_pages_10s)),),
            (Atom(ip, 2, GE, float(s.sustained_pages_10min)),),
            (Atom(ip, OUT_GAPS, INT_GE, float(s.regular_min_gaps)),
             Atom(ip, OUT_MEAN, CV_LT, float(s.regular_max_cv), OUT_STD)),
            (Atom(ip, weight(SEQUENTIAL_CH, LONG), GE, float(s.enumeration_min_products)),
             Atom(ip, ratio(SEQUENTIAL_CH, LONG), GE, float(s.enumeration_min_sequential))),
            (Atom(ip, OUT_DISTINCT, GE, float(s.sweep_min_distinct)),
             Atom(ip, ratio(LISTING_CH, LONG), LE, float(s.sweep_max_listing_share))),
            (Atom(ip, ratio(PROBE_CH, SHORT), PRODUCT_GE, float(s.probing_min_errors), weight(PROBE_CH, SHORT)),
             Atom(ip, ratio(PROBE_CH, SHORT), GE, float(s.probing_min_share))),
            (Atom(net, 2, GE, float(s.prefix_pages_10min)), Atom(net, OUT_DISTINCT, GE, float(s.prefix_min_ips))),
        ]
        if s.assets_through_shieldware:
            triggers.append((Atom(ip, weight(LISTING_CH, LONG), GE, float(s.no_assets_min_pages)),
                             Atom(ip, ratio(ASSET_CH, LONG), LE, float(s.no_assets_max_share))))
        if s.session_cookies:
            triggers.append((Atom(client, weight(NO_COOKIE_CH, LONG), GE, float(s.amnesia_min_pages)),
                             Atom(client, ratio(NO_COOKIE_CH, LONG), GE, float(s.amnesia_min_share))))
        if walks:
            # Triggers are set per route group, and the stack row is there only for requests
            # without a session: a row a plan does not have never fires (the lane checks).
            stack = walk_at
            triggers.append((Atom(stack, OUT_FOLLOWS, GT, 0.0),
                             Atom(stack, weight(WALK_CH, LONG), GE, float(s.walk_min_pages)),
                             Atom(stack, ratio(WALK_CH, LONG), GE, float(s.walk_min_sequential)),
                             Atom(stack, OUT_DISTINCT, GE, float(s.walk_min_addresses))))
        return tuple(triggers)

    # ---- after the response ---------------------------------------------------------------

    async def feedback(self, engine: Any, decision: Any, now: float, status: int | None, event: str | None,
                       fields: dict[str, Any]) -> None:
        if status is None:
            return
        store = engine.store
        ip = decision.client_ip
        if status in PROBE_STATUSES:
            await store.record([Observation("ip", ip, count=0, hits=PROBE)], now)
            return
        step = (ip, decision.path, decision.time)
        if step in self._pending_steps:
            self._pending_steps.discard(step)
            if status < 400:
                await store.record([Observation("ip", ip, count=0, hits=SEQUENTIAL)], now)
