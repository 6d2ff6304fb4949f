"""The engine: facts → signals → evidence → score → policy → Decision, and outcomes fed back in."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from shieldware.decision import SEVERITY, Decision, Verdict, new_reference
from shieldware.decision_log import DecisionLog
from shieldware.evidence import Evidence
from shieldware.facts import RequestFacts
from shieldware.metrics import Metrics
from shieldware.policy import Policy, RouteGroup, default_policy
from shieldware.score import bot_score, ranked
from shieldware.signals import Inspection, Signal, default_signals
from shieldware.store import Store, StoreUnavailable, open_store

log = logging.getLogger("shieldware.engine")

UA_CATEGORY = "ua.category"  # the attribute rules are indexed by (see Engine.rules_for)
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
        self.decision_log = decision_log or DecisionLog(self.policy.decision_log_path,
                                                        log_all=self.policy.decision_log_all)
        self.metrics = metrics or Metrics.shared()
        self._plans: dict[str, tuple[list[Signal], list[Any], tuple[Any, ...]]] = {}
        self._rules_by_category: dict[tuple[str, Any], tuple[Any, ...]] = {}
        self._feedback_signals = [s for s in self.signals if hasattr(s, "feedback")]
        self._status_signals: dict[str, list[Any]] = {}
        self._event_listeners: list[Any] = []
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

    async def decide(self, facts: RequestFacts) -> Decision:
        policy = self.policy
        group = policy.route_table.group_for(facts.method, facts.path)
        inspection = Inspection(facts, group, policy.weights, policy)
        inspectors, assessors, rules = self.plan(group)
        lookups = None
        for signal in inspectors:
            # `inspect` may hand back an awaitable: a record it must read first (one per request at
            # most, e.g. the session's telemetry verdict); most return None and await nothing.
            # Called inline rather than through _run: a call fewer per signal on every request.
            try:
                pending = signal.inspect(facts, inspection)
            except Exception as exc:
                _signal_failed(signal, facts, inspection, exc)
                continue
            if pending is not None:
                lookups = lookups or []
                lookups.append((signal, pending))
        if lookups:
            for signal, pending in lookups:
                await self._run_lookup(signal, pending, facts, inspection)
        demands: list[tuple[Verdict, float | None]] = []
        if not inspection.observations:
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
        return self._conclude(facts, group, inspection, demands, rules)

    async def _run_lookup(self, signal: Any, pending: Any, facts: RequestFacts, inspection: Inspection) -> None:
        try:
            await pending
        except StoreUnavailable as exc:
            inspection.add("store.unavailable", error=str(exc)[:200])
        except Exception as exc:
            log.exception("signal %s lookup failed on %s %s", signal.name, facts.method, facts.path)
            inspection.add("signal.error", signal=signal.name, error=type(exc).__name__)

    def _conclude(
        self, facts: RequestFacts, group: RouteGroup, inspection: Inspection,
        demands: list[tuple[Verdict, float | None]], rules: tuple[Any, ...],
    ) -> Decision:
        evidence = inspection.evidence
        codes = [e.code for e in evidence]
        rule_name, rule_verdict = None, None
        for rule in self.rules_for(group, rules, inspection.attrs.get(UA_CATEGORY)):
            if not rule.matches(facts, group.name, inspection.attrs, codes):
                continue
            if rule.action == "weigh":
                evidence.append(Evidence("policy.weigh", rule.weight, {"rule": rule.name}))
                continue
            rule_name, rule_verdict = rule.name, _RULE_VERDICTS[rule.action]
            evidence.append(Evidence("policy.rule", 0.0, {"rule": rule.name, "action": rule.action}))
            break
        score = bot_score(evidence)
        demands.extend(inspection.demands)
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
        if verdict is Verdict.CHALLENGE and inspection.attrs.get("challenge.satisfied"):
            # The client already passed a challenge (a valid clearance): asking again, even for an
            # explicit challenge rule, would send a person round in circles.
            verdict = Verdict.ALLOW
        if verdict is Verdict.THROTTLE and retry_after is None:
            retry_after = 1.0
        decision = Decision(
            ref=new_reference(),
            verdict=verdict,
            bot_score=score,
            reasons=ranked(evidence) if len(evidence) > 1 else tuple(evidence),
            route_group=group.name,
            time=facts.now,
            client_ip=facts.client_ip,
            method=facts.method,
            path=facts.path,
            mode=self.policy.mode,
            rule=rule_name,
            retry_after=retry_after,
            user_agent=facts.user_agent,
        )
        fingerprint = inspection.attrs.get("fingerprint")
        if fingerprint:
            decision.extra["fingerprint"] = fingerprint
        extra = inspection.attrs.get("decision.extra")
        if extra:  # signals hand the app facts it may act on (e.g. login.step_up)
            decision.extra.update(extra)
        self.metrics.record_decision(decision)
        self.decision_log.write(decision)
        return decision

    def on_event(self, listener: Any) -> None:
        """Subscribe to outcome events (status codes and app reports) — used by account signals."""
        self._event_listeners.append(listener)

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
        to the group never inspected its requests, so it has nothing a status could complete
        (app events still go to every signal: the app may report them from any route)."""
        signals = self._status_signals.get(group_name)
        if signals is None:
            group = self.policy.group(group_name)
            signals = self._feedback_signals if group is None else [
                s for s in self._feedback_signals if getattr(s, "applies_to", _everywhere)(group)]
            self._status_signals[group_name] = signals
        return signals

    async def close(self) -> None:
        self.decision_log.close()
        await self.store.close()


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
