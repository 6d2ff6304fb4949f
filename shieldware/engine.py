"""The engine: facts → signals → evidence → score → policy → Decision, and outcomes fed back in."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

from shieldware.decision import SEVERITY, Decision, Verdict, new_reference
from shieldware.decision_log import DecisionLog
from shieldware.evidence import Evidence
from shieldware.facts import RequestFacts, with_client
from shieldware.fastlane.plan import IDLE, VALUE_FREE_HEADERS, LanePart, Plan, PlanDraft, PlanSeed, ShapeModel
from shieldware.metrics import Metrics
from shieldware.policy import Policy, RouteGroup, default_policy
from shieldware.score import bot_score, ranked
from shieldware.signals import Inspection, Signal, default_signals
from shieldware.store import Store, StoreUnavailable, open_store
from shieldware.store.base import WindowStats

log = logging.getLogger("shieldware.engine")

UA_CATEGORY = "ua.category"  # the attribute rules are indexed by (see Engine.rules_for)
_STATIC_LANES = ("shape", "address")  # signals whose findings a plan holds as they are (fastlane/plan.py)
_UNSET = object()
STORE_RETRY_AFTER = 5.0  # seconds a fail-closed group asks clients to wait while the store is down

_RULE_VERDICTS = {
    "allow": Verdict.ALLOW,
    "block": Verdict.BLOCK,
    "challenge": Verdict.CHALLENGE,
    "throttle": Verdict.THROTTLE,
}


def _everywhere(group: RouteGroup) -> bool:
    return True


class Engine:
    """One engine serves every front door (middleware, proxy, log replay) of a process.

    `decide` never calls the clock: the time of the request is `facts.now`.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        store: Store | None = None,
        signals: Sequence[Signal] | None = None,
        decision_log: DecisionLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.policy = policy or default_policy()
        self.store = store or open_store(self.policy.store_uri)
        self.signals = list(signals) if signals is not None else default_signals()
        policy = self.policy
        self.decision_log = decision_log or DecisionLog(policy.decision_log_path, log_all=policy.decision_log_all,
                                                        max_bytes=policy.decision_log_max_bytes,
                                                        keep=policy.decision_log_keep)
        self.metrics = metrics or Metrics.shared()
        self._plans: dict[str, tuple[list[Signal], list[Any], tuple[Any, ...]]] = {}
        self._rules_by_category: dict[tuple[str, Any], tuple[Any, ...]] = {}
        self._feedback_signals = [s for s in self.signals if hasattr(s, "feedback")]
        self._status_signals: dict[str, list[Any]] = {}
        self._event_listeners: list[Any] = []
        self._plannable: dict[str, bool] = {}
        self._plan_listeners: list[Any] = []
        self._address_signals = [s for s in self.signals if getattr(s, "lane", None) == "address"]
        for signal in self.signals:
            bind = getattr(signal, "bind", None)
            if bind is not None:
                bind(self)

    def plan(self, group: RouteGroup) -> tuple[list[Signal], list[Any], tuple[Any, ...]]:
        """What a route group runs, cached: its signals (minus `skip_signals`), those of them that
        assess window state, and the policy rules that can match in it (rules limited to other
        groups are left out here rather than tested on every request)."""
        plan = self._plans.get(group.name)
        if plan is None:
            # A signal may say it has nothing to do in a group (`applies_to(group) -> bool`), so
            # e.g. login signals cost a product page nothing.
            active = [s for s in self.signals if s.name not in group.skip_signals
                      and getattr(s, "applies_to", _everywhere)(group)]
            rules = tuple(r for r in self.policy.rules if r.groups is None or group.name in r.groups)
            plan = (active, [s for s in active if hasattr(s, "assess")], rules)
            self._plans[group.name] = plan
        return plan

    def rules_for(self, group: RouteGroup, rules: tuple[Any, ...], category: Any) -> tuple[Any, ...]:
        """The group's rules minus those whose `ua.category` condition this request's category
        fails (presets such as allow-search-engines never match a browser), cached. Order kept:
        the first matching allow/block/challenge still wins."""
        if not isinstance(category, (str, bool, type(None))):
            return rules  # a custom signal's odd value: test every rule rather than cache by it
        key = (group.name, category)
        kept = self._rules_by_category.get(key)
        if kept is None:
            kept = tuple(rule for rule in rules if rule.admits_attribute(UA_CATEGORY, category))
            if len(self._rules_by_category) >= 1024:  # categories come from signals: a small set
                self._rules_by_category.clear()
            self._rules_by_category[key] = kept
        return kept

    async def decide(self, facts: RequestFacts, observed: Sequence[WindowStats] | None = None) -> Decision:
        """Decide one request. `observed`: its window answers, when the fast lane already made the
        store call for it (then the store is not asked again)."""
        decision, _ = await self._decide(facts, observed, False)
        return decision

    async def decide_and_plan(self, facts: RequestFacts) -> tuple[Decision, PlanDraft | None]:
        """Decide, and draft the plan the fast lane answers this request's shape with from now on
        (None: the request or its route group is not one the lane can answer)."""
        return await self._decide(facts, None, True)

    def derive_plan(self, model: ShapeModel, client_ip: str, now: float) -> PlanDraft | None:
        """Draft the plan of a new client of a planned shape: the shape's findings are replayed,
        only the signals that read the address (or do per-request work) run again."""
        facts = with_client(model.facts, client_ip, now)
        group = model.group
        inspection = Inspection(facts, group, self.policy.weights, self.policy)
        inspectors, _, rules = self.plan(group)
        for signal in inspectors:
            recorded = model.recorded.get(signal)
            if recorded is not None:
                inspection.evidence.extend(recorded[0])
                inspection.attrs.update(recorded[1])
                continue
            try:
                pending = signal.inspect(facts, inspection)
            except Exception:
                log.exception("signal %s failed drafting a plan", signal.name)
                return None
            if pending is not None:  # a record to read: not a request the lane answers
                if hasattr(pending, "close"):
                    pending.close()
                return None
        return self._draft(facts, group, inspection, inspectors, rules, model.recorded)

    async def _decide(self, facts: RequestFacts, observed: Sequence[WindowStats] | None,
                      want_plan: bool) -> tuple[Decision, PlanDraft | None]:
        policy = self.policy
        group = policy.route_table.group_for(facts.method, facts.path)
        inspection = Inspection(facts, group, policy.weights, policy)
        inspectors, assessors, rules = self.plan(group)
        lookups = None
        recorded: dict[Any, tuple[tuple[Evidence, ...], dict[str, Any]]] | None = {} if want_plan else None
        for signal in inspectors:
            # `inspect` may hand back an awaitable: a record it must read first (one per request at
            # most, e.g. the session's telemetry verdict); most return None and await nothing.
            # Called inline rather than through _run: a call fewer per signal on every request.
            if recorded is not None and getattr(signal, "lane", None) == "shape":
                before, attrs_before = len(inspection.evidence), dict(inspection.attrs)
            try:
                pending = signal.inspect(facts, inspection)
            except Exception as exc:
                _signal_failed(signal, facts, inspection, exc)
                recorded = None  # a failing signal's findings are not worth replaying
                continue
            if pending is not None:
                lookups = lookups or []
                lookups.append((signal, pending))
            elif recorded is not None and getattr(signal, "lane", None) == "shape":
                recorded[signal] = (tuple(inspection.evidence[before:]),
                                    {k: v for k, v in inspection.attrs.items() if attrs_before.get(k, _UNSET) is not v})
        if lookups:
            for signal, pending in lookups:
                await self._run_lookup(signal, pending, facts, inspection)
        # Drafted before the window answers: a plan holds what this shape and address say on
        # their own; the windows are judged again on every request.
        draft = None
        if recorded is not None and not lookups:
            draft = self._draft(facts, group, inspection, inspectors, rules, recorded)
        demands: list[tuple[Verdict, float | None]] = []
        if observed is not None:
            if len(observed) != len(inspection.observations):
                log.error("the fast lane observed %d windows where the signals queued %d; assessing what came",
                          len(observed), len(inspection.observations))
            inspection.stats = list(observed)
            _assess(assessors, facts, inspection)
        elif not inspection.observations:
            # Nothing to observe (e.g. account signals on a product page): no store round trip.
            inspection.stats = []
            _assess(assessors, facts, inspection)
        else:
            try:
                inspection.stats = await self.store.observe(inspection.observations, facts.now)
            except StoreUnavailable as exc:
                inspection.add("store.unavailable", error=str(exc)[:200], on_failure=group.on_store_failure)
                if group.on_store_failure == "challenge":
                    demands.append((Verdict.CHALLENGE, None))
                elif group.on_store_failure == "unavailable":
                    demands.append((Verdict.UNAVAILABLE, STORE_RETRY_AFTER))
            else:
                _assess(assessors, facts, inspection)
        return self._conclude(facts, group, inspection, demands, rules), draft

    def assess_planned(self, seed: PlanSeed, client_ip: str, path: str, query: str, now: float,
                       observed: Sequence[WindowStats]) -> Decision:
        """Decide a planned request whose windows crossed a trigger in the fast lane: its plan's
        inspection (what the shape and address said), this request's window answers assessed
        and the policy applied, as `decide` would after inspecting it again."""
        facts = with_client(seed.facts, client_ip, now, path, query)
        group = seed.group
        inspection = Inspection(facts, group, self.policy.weights, self.policy)
        inspection.evidence = list(seed.evidence)
        inspection.attrs = dict(seed.attrs)
        inspection.demands = list(seed.demands)
        inspection.observations = list(seed.observations)
        inspection.stats = list(observed)
        _, assessors, rules = self.plan(group)
        _assess(assessors, facts, inspection)
        return self._conclude(facts, group, inspection, [], rules)

    async def _run_lookup(self, signal: Any, pending: Any, facts: RequestFacts, inspection: Inspection) -> None:
        try:
            await pending
        except StoreUnavailable as exc:
            inspection.add("store.unavailable", error=str(exc)[:200])
        except Exception as exc:
            log.exception("signal %s lookup failed on %s %s", signal.name, facts.method, facts.path)
            inspection.add("signal.error", signal=signal.name, error=type(exc).__name__)

    def _judge(
        self, facts: RequestFacts, group: RouteGroup, evidence: Sequence[Evidence], attrs: dict[str, Any],
        demands: Sequence[tuple[Verdict, float | None]], rules: tuple[Any, ...], path_blind: bool = False,
    ) -> Judgement | None:
        """Evidence, rules and demands → verdict, score and reasons. With `path_blind` (drafting a
        plan), rules with a path condition are taken as not matching and their globs returned,
        so the lane sends requests on those paths to Python; None when a rule reads a header
        value a plan leaves out."""
        evidence = list(evidence)
        codes = [e.code for e in evidence]
        rule_name, rule_verdict = None, None
        globs: list[str] = []
        naming: list[Any] = []  # rules that would match a request like this one from some address
        for rule in self.rules_for(group, rules, attrs.get(UA_CATEGORY)):
            if path_blind:
                if any(name in VALUE_FREE_HEADERS for name, _ in rule.headers):
                    return None
                if rule.paths is not None:
                    if not rule.path_globs:
                        return None  # an empty path list matches every path: nothing to hand over
                    if rule.matches(facts, group.name, attrs, codes, ignore_path=True):
                        globs.extend(rule.path_globs)
                    continue
                if rule.networks and rule.matches(facts, group.name, attrs, codes, ignore_address=True):
                    naming.append(rule)
            if not rule.matches(facts, group.name, attrs, codes):
                continue
            if rule.action == "weigh":
                evidence.append(Evidence("policy.weigh", rule.weight, {"rule": rule.name}))
                continue
            rule_name, rule_verdict = rule.name, _RULE_VERDICTS[rule.action]
            evidence.append(Evidence("policy.rule", 0.0, {"rule": rule.name, "action": rule.action}))
            break
        score = bot_score(evidence)
        retry_after = None
        if rule_verdict is not None:
            verdict = rule_verdict
        else:
            verdict = group.verdict_for(score)
            for wanted, wait in demands:
                if SEVERITY[wanted] > SEVERITY[verdict]:
                    verdict = wanted
                if wanted is Verdict.THROTTLE and wait is not None:
                    retry_after = max(retry_after or 0.0, wait)
                if wanted is Verdict.UNAVAILABLE:
                    retry_after = max(retry_after or 0.0, wait or STORE_RETRY_AFTER)
        if verdict is Verdict.CHALLENGE and attrs.get("challenge.satisfied"):
            # The client already passed a challenge (a valid clearance): asking again, even for an
            # explicit challenge rule, would send a person round in circles.
            verdict = Verdict.ALLOW
        if verdict is Verdict.THROTTLE and retry_after is None:
            retry_after = 1.0
        reasons = ranked(evidence) if len(evidence) > 1 else tuple(evidence)
        return Judgement(verdict, score, reasons, rule_name, retry_after, tuple(globs), tuple(naming))

    def _decision_extra(self, attrs: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        fingerprint = attrs.get("fingerprint")
        if fingerprint:
            extra["fingerprint"] = fingerprint
        more = attrs.get("decision.extra")
        if more:  # signals hand the app facts it may act on (e.g. login.step_up)
            extra.update(more)
        return extra

    def _conclude(
        self, facts: RequestFacts, group: RouteGroup, inspection: Inspection,
        demands: list[tuple[Verdict, float | None]], rules: tuple[Any, ...],
    ) -> Decision:
        demands.extend(inspection.demands)
        judged = self._judge(facts, group, inspection.evidence, inspection.attrs, demands, rules)
        assert judged is not None  # only a path-blind judgement gives up
        decision = Decision(
            ref=new_reference(),
            verdict=judged.verdict,
            bot_score=judged.score,
            reasons=judged.reasons,
            route_group=group.name,
            time=facts.now,
            client_ip=facts.client_ip,
            method=facts.method,
            path=facts.path,
            mode=self.policy.mode,
            rule=judged.rule,
            retry_after=judged.retry_after,
            user_agent=facts.user_agent,
            extra=self._decision_extra(inspection.attrs),
        )
        self.record(decision)
        return decision

    def record(self, decision: Decision) -> None:
        """Count the decision and log it (the fast lane's decisions come here too)."""
        self.metrics.record_decision(decision)
        self.decision_log.write(decision)

    # ---- plans for the fast lane --------------------------------------------------------------

    def _draft(self, facts: RequestFacts, group: RouteGroup, inspection: Inspection, inspectors: list[Any],
               rules: tuple[Any, ...], recorded: dict[Any, Any]) -> PlanDraft | None:
        """The plan for this request's shape, address and group, or None when the lane cannot
        answer it: a signal is doing per-request work, or cannot say when it would have."""
        if facts.notes or facts.source != "live" or inspection.demands or not self._group_plannable(group):
            return None
        part = IDLE
        for signal in inspectors:
            if getattr(signal, "lane", None) in _STATIC_LANES:
                continue
            try:
                mine = signal.lane_part(facts, inspection)
            except Exception:
                log.exception("signal %s could not describe its plan part", signal.name)
                return None
            if mine is None:
                return None
            if mine is not IDLE:
                part = _merged(part, mine)
        judged = self._judge(facts, group, inspection.evidence, inspection.attrs, (), rules, path_blind=True)
        if judged is None:
            return None
        seed = PlanSeed(facts, group, tuple(inspection.evidence), dict(inspection.attrs), tuple(inspection.demands),
                        tuple(inspection.observations))
        plan = Plan(judged.verdict, judged.score, judged.reasons, group.name, facts.client_ip, facts.method,
                    facts.user_agent, self.policy.mode, judged.rule, judged.retry_after,
                    self._decision_extra(inspection.attrs), part.feedback_statuses, seed)
        any_address, excluded = self._for_any_address(facts, judged.naming_rules)
        return PlanDraft(plan, list(inspection.observations), part, judged.rule_globs,
                         ShapeModel(facts, group, recorded), any_address, excluded)

    def address_is_plain(self, client_ip: str) -> bool:
        """No signal that reads the address has anything to say of this one."""
        # Asked once per new client of a planned shape (a loop: a generator costs more than the
        # one signal usually asked).
        for signal in self._address_signals:  # noqa: SIM110 - see above
            if not signal.lane_address(client_ip):
                return False
        return True

    def _for_any_address(self, facts: RequestFacts, naming_rules: tuple[Any, ...]) -> tuple[bool, tuple[Any, ...]]:
        """Whether this plan holds for every plain address of its shape, and the networks that
        the policy's rules name (a rule matching this very address makes the plan its own)."""
        if not self.address_is_plain(facts.client_ip):
            return False, ()
        if any(rule.names_address(facts.client_ip) for rule in naming_rules):
            return False, ()
        return True, tuple(net for rule in naming_rules for net in rule.networks)

    def on_forget_plans(self, listener: Any) -> None:
        """Call `listener()` whenever plans made so far no longer hold (the fast lane clears them)."""
        self._plan_listeners.append(listener)

    def forget_plans(self) -> None:
        """Something a plan holds changed (e.g. the network databases): plans are made afresh."""
        self._plannable.clear()
        for listener in self._plan_listeners:
            listener()

    def _group_plannable(self, group: RouteGroup) -> bool:
        """Every signal the group runs declares its part in plans, and the ones whose status
        feedback the group gets say which statuses they act on (cached per group)."""
        known = self._plannable.get(group.name)
        if known is None:
            inspectors, _, _ = self.plan(group)
            known = not self._event_listeners and all(
                getattr(s, "lane", None) in _STATIC_LANES or hasattr(s, "lane_part") for s in inspectors)
            known = known and all(s in inspectors for s in self._status_feedback(group.name))
            self._plannable[group.name] = known
        return known

    def on_event(self, listener: Any) -> None:
        """Subscribe to outcome events (status codes and app reports) — used by account signals."""
        self._event_listeners.append(listener)
        self.forget_plans()  # a listener must hear every status: no more plans

    async def feedback(
        self, decision: Decision, now: float, status: int | None = None,
        event: str | None = None, fields: dict[str, Any] | None = None,
    ) -> None:
        """Tell the engine how a request ended: its response status, or an app event.

        Signals that learn from outcomes (probing 404s, failed logins, declined payments) get
        it through their `feedback` hook; errors there are logged, never raised to the app.
        """
        fields = fields or {}
        signals = self._feedback_signals if event is not None else self._status_feedback(decision.route_group)
        for signal in signals:
            try:
                await signal.feedback(self, decision, now, status, event, fields)
            except StoreUnavailable:  # already counted by the store's breaker; no traceback per request
                self.metrics.count("store_unavailable", during="feedback")
            except Exception:
                log.exception("feedback to %s failed", signal.name)
        for listener in self._event_listeners:
            try:
                await listener(decision, now, status, event, fields)
            except Exception:
                log.exception("event listener failed")
        if event is not None:
            self.metrics.record_event(event)

    def _status_feedback(self, group_name: str) -> list[Any]:
        """The signals a response status can concern in a group, cached. One that does not apply
        to the group, or that the group skips, never inspected its requests, so it has nothing a
        status could complete (app events still go to every signal: the app may report them from
        any route). The group's plan and this list agree, so a group skipping a signal that hears
        statuses can still be planned."""
        signals = self._status_signals.get(group_name)
        if signals is None:
            group = self.policy.group(group_name)
            signals = self._feedback_signals if group is None else [
                s for s in self._feedback_signals
                if s.name not in group.skip_signals and getattr(s, "applies_to", _everywhere)(group)]
            self._status_signals[group_name] = signals
        return signals

    async def close(self) -> None:
        self.decision_log.close()
        await self.store.close()


class Judgement(NamedTuple):
    verdict: Verdict
    score: float
    reasons: tuple[Evidence, ...]
    rule: str | None
    retry_after: float | None
    rule_globs: tuple[str, ...]
    naming_rules: tuple[Any, ...]  # rules with an `ip:` condition that this request's shape meets


def _merged(part: LanePart, more: LanePart) -> LanePart:
    """Two signals' plan parts as one (at most one signal fills each hole)."""
    return LanePart(
        pid_row=more.pid_row if more.pid_row >= 0 else part.pid_row,
        pid_seen=part.pid_seen | more.pid_seen,
        session_row=more.session_row if more.session_row >= 0 else part.session_row,
        no_session_hits=part.no_session_hits | more.no_session_hits,
        step_row=more.step_row if more.step_row >= 0 else part.step_row,
        step_seen=part.step_seen | more.step_seen,
        triggers=part.triggers + more.triggers,
        feedback_statuses=part.feedback_statuses | more.feedback_statuses,
        address_rows=part.address_rows + more.address_rows,
        address_items=part.address_items + more.address_items,
    )


def _assess(assessors: list[Any], facts: RequestFacts, inspection: Inspection) -> None:
    """Run the signals that read window state, each isolated from the others' failures."""
    for signal in assessors:
        try:
            signal.assess(facts, inspection)
        except Exception as exc:
            _signal_failed(signal, facts, inspection, exc)


def _signal_failed(signal: Signal, facts: RequestFacts, inspection: Inspection, exc: Exception) -> None:
    """A bug in one signal must not take the shop down: skip it, say so, keep the others."""
    log.exception("signal %s failed on %s %s", signal.name, facts.method, facts.path, exc_info=exc)
    inspection.add("signal.error", signal=signal.name, error=type(exc).__name__)
