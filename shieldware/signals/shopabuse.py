"""Shop-abuse signals: card testing on checkout, cart hoarding, coupon enumeration, sign-up floods.

Window conventions (key kinds owned by this module); ratio channel 0 is "failed" (declined
payment, invalid code), fed back with ``store.record`` when the outcome is known:

=============  ==============================  ===============================================
kind           key                             counters count
=============  ==============================  ===============================================
``pay.sess``   session hash                    payment attempts
``pay.ip``     client IP                       payment attempts
``pay.fp``     client fingerprint              payment attempts
``cart.sess``  session hash                    add-to-cart requests (+ GCRA velocity limit)
``cart.ip``    client IP                       add-to-cart requests (+ GCRA velocity limit)
``cartq.sess`` session hash                    items added (quantities, fed back)
``cartq.ip``   client IP                       items added (quantities, fed back)
``cp.sess``    session hash                    coupon / gift-card tries (+ GCRA limit)
``cp.ip``      client IP                       coupon / gift-card tries (+ GCRA limit)
``su.ip``      client IP                       sign-ups (+ GCRA limit)
``su.fp``      client fingerprint              sign-ups
=============  ==============================  ===============================================
"""

from __future__ import annotations

from typing import Any

from shieldware.decision import Verdict
from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.outcomes import action_of, event_family, status_event, was_reported
from shieldware.signals.abuse_policy import AbuseThresholds, thresholds
from shieldware.signals.base import Inspection
from shieldware.signals.clientkeys import client_fingerprint, session_key
from shieldware.store.base import Observation

SHORT, LONG = 0, 1
TEN_MINUTES, HOUR = 2, 3
FAILED = 1

register_reason("shop.card_testing", 45, "Several declined payments from this session, address or client: card "
                "testing. Further attempts are challenged, then blocked.")
register_reason("shop.cart_velocity", 0, "Items are added to the cart faster than a person shops; slowed down.")
register_reason("shop.hoarding", 45, "Far more items were added to carts in the last hour than a shopper buys: "
                "inventory hoarding.")
register_reason("shop.coupon_rate", 0, "Too many coupon or gift-card codes tried; slowed down.")
register_reason("shop.coupon_enumeration", 45, "Many invalid coupon or gift-card codes: someone is guessing codes.")
register_reason("shop.signup_velocity", 30, "Many accounts signed up from this address or client: fake sign-ups.")

_FAMILY_OF_ACTION = {"payment": "payment", "coupon": "coupon", "cart_add": "cart"}


def _failures(stats: Any, half_life: int = LONG) -> float:
    return stats.ratio(0, half_life) * stats.ratio_weight(0, half_life)


class ShopAbuseSignal:
    name = "shopabuse"

    def applies_to(self, group: Any) -> bool:
        return any(action != "login" for action in group.setting("watch").actions)

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        action = action_of(facts, inspection.group)
        if action is None or action == "login":
            return
        limits = thresholds(inspection.policy)
        session = session_key(facts)
        ip = facts.client_ip
        fingerprint = client_fingerprint(facts, inspection)
        queue = inspection.observations
        start = len(queue)
        if action == "payment":
            queue.append(Observation("pay.ip", ip))
            queue.append(Observation("pay.fp", fingerprint))
            if session:
                queue.append(Observation("pay.sess", session))
        elif action == "cart_add":
            queue.append(Observation("cart.ip", ip, limits=(limits.cart_adds,)))
            queue.append(Observation("cartq.ip", ip, count=0.0))
            if session:
                queue.append(Observation("cart.sess", session, limits=(limits.cart_adds,)))
                queue.append(Observation("cartq.sess", session, count=0.0))
        elif action == "coupon":
            queue.append(Observation("cp.ip", ip, limits=(limits.coupon_attempts,)))
            if session:
                queue.append(Observation("cp.sess", session, limits=(limits.coupon_attempts,)))
        elif action == "signup":
            queue.append(Observation("su.ip", ip, limits=(limits.signups,)))
            queue.append(Observation("su.fp", fingerprint))
        inspection.attrs["shop._plan"] = (action, start, len(queue))
        extra = inspection.attrs.setdefault("decision.extra", {})
        extra["shop"] = {"action": action, "session": session, "fingerprint": fingerprint}

    def assess(self, facts: RequestFacts, inspection: Inspection) -> None:
        plan = inspection.attrs.get("shop._plan")
        if plan is None or inspection.stats is None:
            return
        action, start, end = plan
        stats = inspection.stats[start:end]
        limits = thresholds(inspection.policy)
        if action == "payment":
            self._payment(inspection, limits, stats)
        elif action == "cart_add":
            self._cart(inspection, limits, stats)
        elif action == "coupon":
            self._coupon(inspection, limits, stats)
        elif action == "signup":
            self._signup(inspection, limits, stats)

    def _payment(self, inspection: Inspection, limits: AbuseThresholds, stats: list) -> None:
        by_ip, by_fp, *by_session = stats
        keyed = [("ip", by_ip), *(("session", s) for s in by_session)]
        declines, key, worst = max((_failures(s), name, s) for name, s in keyed)
        fp_declines = _failures(by_fp)
        if declines >= limits.declines_challenge:
            attempts = worst.count(TEN_MINUTES)
            inspection.add("shop.card_testing", by=key, declines=round(declines, 1), attempts_10m=round(attempts))
            # A client that keeps paying while challenged is not a person fixing a typo.
            if declines >= limits.declines_block or attempts >= limits.declines_block:
                inspection.demand(Verdict.BLOCK)
            else:
                inspection.demand(Verdict.CHALLENGE)
        if fp_declines >= limits.fingerprint_declines_block and by_fp.ratio(0, LONG) >= 0.5:
            inspection.add("shop.card_testing", by="fingerprint", declines=round(fp_declines, 1))
            inspection.demand(Verdict.BLOCK)

    def _cart(self, inspection: Inspection, limits: AbuseThresholds, stats: list) -> None:
        rates = stats[0::2]  # cart.ip, cart.sess
        quantities = stats[1::2]  # cartq.ip, cartq.sess
        wait = max(s.retry_after for s in rates)
        if wait > 0:
            inspection.add("shop.cart_velocity", limit=str(limits.cart_adds))
            inspection.demand(Verdict.THROTTLE, wait)
        items = max(s.count(HOUR) for s in quantities)
        if items >= limits.cart_quantity_hour:
            inspection.add("shop.hoarding", items_1h=round(items))
            inspection.demand(Verdict.CHALLENGE)

    def _coupon(self, inspection: Inspection, limits: AbuseThresholds, stats: list) -> None:
        wait = max(s.retry_after for s in stats)
        if wait > 0:
            inspection.add("shop.coupon_rate", limit=str(limits.coupon_attempts))
            inspection.demand(Verdict.THROTTLE, wait)
        recent = max(_failures(s, SHORT) for s in stats)
        lasting = max(_failures(s, LONG) for s in stats)
        if lasting >= limits.coupon_failures_block:
            inspection.add("shop.coupon_enumeration", invalid=round(lasting, 1))
            inspection.demand(Verdict.BLOCK)
        elif recent >= limits.coupon_failures_throttle:
            inspection.add("shop.coupon_enumeration", invalid=round(recent, 1))
            inspection.demand(Verdict.THROTTLE, 60.0)

    def _signup(self, inspection: Inspection, limits: AbuseThresholds, stats: list) -> None:
        by_ip, by_fp = stats
        if by_ip.retry_after > 0:
            inspection.add("shop.signup_velocity", by="ip", limit=str(limits.signups))
            inspection.demand(Verdict.THROTTLE, by_ip.retry_after)
        if by_fp.count(HOUR) >= limits.fingerprint_signups_hour:
            inspection.add("shop.signup_velocity", by="fingerprint", signups_1h=round(by_fp.count(HOUR)))
            inspection.demand(Verdict.CHALLENGE)

    async def feedback(self, engine: Any, decision: Any, now: float, status: int | None, event: str | None,
                       fields: dict[str, Any]) -> None:
        shop = decision.extra.get("shop")
        family, failed = self._outcome(engine, decision, status, event, fields, shop)
        if family is None or family == "login" or family == "signup":
            return
        marker = f"shop.{family}.outcome"
        if decision.extra.get(marker) is not None:
            return
        decision.extra[marker] = "failed" if failed else ("done" if failed is None else "ok")
        shop = shop or {}
        session, fingerprint = shop.get("session"), shop.get("fingerprint")
        ip = decision.client_ip
        observations: list[Observation] = []
        if family == "cart":
            quantity = _quantity(fields.get("quantity"))
            observations.append(Observation("cartq.ip", ip, count=quantity))
            if session:
                observations.append(Observation("cartq.sess", session, count=quantity))
        elif failed is not None:
            bit = FAILED if failed else 0
            prefix = "pay" if family == "payment" else "cp"
            observations.append(Observation(f"{prefix}.ip", ip, count=0.0, seen=1, hits=bit))
            if session:
                observations.append(Observation(f"{prefix}.sess", session, count=0.0, seen=1, hits=bit))
            if family == "payment" and fingerprint:
                observations.append(Observation("pay.fp", fingerprint, count=0.0, seen=1, hits=bit))
        if observations:
            await engine.store.record(observations, now)
        engine.metrics.count("shop_outcomes", family=family, outcome=decision.extra[marker])

    def _outcome(self, engine: Any, decision: Any, status: int | None, event: str | None,
                 fields: dict[str, Any], shop: dict | None) -> tuple[str | None, bool | None]:
        if event is not None:
            return event_family(event)
        if status is None or shop is None:
            return None, None
        family = _FAMILY_OF_ACTION.get(shop.get("action", ""))
        if family is None or was_reported(decision, family):
            return None, None
        group = engine.policy.group(decision.route_group)
        derived = status_event(group, decision.method, decision.path, status, fields.get("response_headers")) \
            if group is not None else None
        return event_family(derived) if derived else (None, None)


def _quantity(value: Any) -> float:
    try:
        quantity = float(value)
    except (TypeError, ValueError):
        return 1.0
    return min(max(quantity, 0.0), 10_000.0) if quantity == quantity else 1.0
