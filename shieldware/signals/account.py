"""Login signals (account takeover): credential stuffing, guessing, distributed attacks, mass attacks.

Window conventions (key kinds owned by this module)
---------------------------------------------------
Every login attempt (a POST to a `watch: {login: [...]}` path) observes, in the request's one
store call:

===========  ====================  ==========================  ======================================
kind         key                   counters count               distinct sketch 0 / 1
===========  ====================  ==========================  ======================================
``li.ip``    client IP             attempts (+ GCRA ceiling)    accounts / —
``li.net``   IP /24 or /64         attempts                     accounts / IPs
``li.fp``    client fingerprint    attempts                     accounts / IPs
``li.asn``   ASN (when known)      attempts                     accounts / IPs
``li.all``   route group name     attempts                     — / —
``li.acct``  account (normalised)  FAILURES (fed back)          IPs / fingerprints
===========  ====================  ==========================  ======================================

Ratio channel 0 of every kind is "login failed": an outcome adds to its denominator, a failure
to its numerator (``seen``/``hits`` bit 0), fed back with ``store.record`` once the outcome is
known. ``ratio * ratio_weight`` is the decayed number of failures.

Penalties that can block are keyed on the attacker (IP, fingerprint); an account under attack
only ever gets a challenge, so nobody can lock a customer out by failing logins in their name.
"""

from __future__ import annotations

import logging
from typing import Any

from shieldware.decision import Verdict
from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.outcomes import (
    action_of,
    event_family,
    form_field,
    normalise_account,
    status_event,
    was_reported,
)
from shieldware.policy import register_attribute
from shieldware.signals.abuse_policy import AbuseThresholds, thresholds
from shieldware.signals.base import Inspection
from shieldware.signals.clientkeys import client_asn, client_fingerprint, ip_prefix
from shieldware.store.base import Observation
from shieldware.switches import switchboard_for

log = logging.getLogger("shieldware.signals.account")

FAILED = 1  # ratio channel 0 bit: "login failed"
SHORT, LONG = 0, 1  # RATIO_HALF_LIVES indices: 60 s and 30 min
MINUTE, TEN_MINUTES, HOUR = 1, 2, 3  # COUNTER_HORIZONS indices

register_reason("ato.username_spray", 45, "One IP address tried many different accounts: credential stuffing.")
register_reason("ato.ip_failures", 45, "Many failed logins from this IP address.")
register_reason("ato.login_rate", 0, "Login attempts from this IP exceed the hard ceiling; slowed down, not blocked.")
register_reason("ato.prefix_spray", 40, "Many accounts tried, mostly failing, from one network block (/24 or /64).")
register_reason("ato.fingerprint_spray", 50, "One client fingerprint tried many accounts, mostly failing: a "
                "stuffing tool spread over many addresses.")
register_reason("ato.fingerprint_spread", 40, "One client fingerprint logs in from many IP addresses, mostly "
                "failing: a botnet sharing one client stack behind proxies.")
register_reason("ato.asn_spray", 30, "Many accounts tried, mostly failing, from one network (ASN).")
register_reason("ato.account_guessing", 30, "This account had many failed logins recently: password guessing. "
                "Attempts on it are challenged, never blocked.")
register_reason("ato.account_distributed", 30, "Failed logins on this account come from many IP addresses: a "
                "distributed attack on one account. Attempts on it are challenged, never blocked.")
register_reason("ato.mass_attack", 20, "The share of failed logins across the whole site jumped far above its "
                "baseline: a mass credential-stuffing attack is under way.")
register_reason("ato.step_up", 0, "This login follows several failures on the account: if it succeeds, the app "
                "should ask for a second factor.")

register_attribute("login.account", "the account a login attempt names (from the configured form/JSON field)")
register_attribute("login.step_up", "true when a login attempt follows several failures on its account")


def _failures(stats: Any, half_life: int = LONG) -> float:
    return stats.ratio(0, half_life) * stats.ratio_weight(0, half_life)


def _mostly_failing(stats: Any, limits: AbuseThresholds, minimum: float = 3.0) -> bool:
    return stats.ratio_weight(0, LONG) >= minimum and stats.ratio(0, LONG) >= limits.failing_ratio


class LoginSignal:
    """Watches login attempts and their outcomes; see the module docstring for the windows."""

    name = "account"

    def __init__(self) -> None:
        self._baseline: float | None = None
        self._board: Any = None
        self._metrics: Any = None

    def bind(self, engine: Any) -> None:
        self._board = switchboard_for(engine)
        self._metrics = engine.metrics

    def applies_to(self, group: Any) -> bool:
        return "login" in group.setting("watch").actions

    # ---- before the store call ---------------------------------------------------------------

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        if action_of(facts, inspection.group) != "login":
            return
        limits = thresholds(inspection.policy)
        account = form_field(facts, "account")
        ip = facts.client_ip
        fingerprint = client_fingerprint(facts, inspection)
        asn = client_asn(inspection)
        observations = inspection.observations
        start = len(observations)
        observations.append(Observation("li.ip", ip, distinct=(account,), limits=(limits.login_attempts_per_ip,)))
        observations.append(Observation("li.net", ip_prefix(ip), distinct=(account, ip)))
        observations.append(Observation("li.fp", fingerprint, distinct=(account, ip)))
        observations.append(Observation("li.all", inspection.group.name))
        if account:
            observations.append(Observation("li.acct", account, count=0.0, distinct=(ip, fingerprint)))
        if asn:
            observations.append(Observation("li.asn", asn, distinct=(account, ip)))
        inspection.attrs["login._plan"] = (start, account, asn)
        if account:
            inspection.attrs["login.account"] = account
        extra = inspection.attrs.setdefault("decision.extra", {})
        extra["login"] = {"account": account, "fingerprint": fingerprint, "asn": asn}

    # ---- after the store call ----------------------------------------------------------------

    def assess(self, facts: RequestFacts, inspection: Inspection) -> None:
        plan = inspection.attrs.get("login._plan")
        if plan is None or inspection.stats is None:
            return
        start, account, asn = plan
        stats = inspection.stats
        limits = thresholds(inspection.policy)
        by_ip, by_net, by_fp, overall = stats[start:start + 4]
        by_account = stats[start + 4] if account else None
        by_asn = stats[start + 4 + (1 if account else 0)] if asn else None
        self._judge_attacker(inspection, limits, by_ip, by_net, by_fp, by_asn)
        if by_account is not None:
            self._judge_account(inspection, limits, account, by_account)
        self._judge_site(facts, inspection, limits, overall)

    def _judge_attacker(self, inspection: Inspection, limits: AbuseThresholds, by_ip: Any, by_net: Any,
                        by_fp: Any, by_asn: Any) -> None:
        accounts = by_ip.distinct(0)
        if accounts >= limits.spray_challenge_accounts:
            inspection.add("ato.username_spray", accounts=round(accounts), attempts_10m=round(by_ip.count(TEN_MINUTES)))
            # Refused attempts get no outcome, so the failing share rests on whatever outcomes remain.
            if accounts >= limits.spray_block_accounts and _mostly_failing(by_ip, limits, minimum=1.0):
                inspection.demand(Verdict.BLOCK)
        ip_failures = _failures(by_ip)
        if ip_failures >= limits.ip_failures_challenge:
            inspection.add("ato.ip_failures", failures=round(ip_failures, 1), share=round(by_ip.ratio(0, LONG), 2))
        if by_ip.retry_after > 0:
            inspection.add("ato.login_rate", limit=str(limits.login_attempts_per_ip))
            inspection.demand(Verdict.THROTTLE, by_ip.retry_after)
        if by_net.distinct(0) >= limits.prefix_spray_accounts and _mostly_failing(by_net, limits):
            inspection.add("ato.prefix_spray", accounts=round(by_net.distinct(0)), ips=round(by_net.distinct(1)))
        if _mostly_failing(by_fp, limits, minimum=5.0):
            if by_fp.distinct(0) >= limits.fingerprint_spray_accounts:
                inspection.add("ato.fingerprint_spray", accounts=round(by_fp.distinct(0)),
                               share=round(by_fp.ratio(0, LONG), 2))
            if by_fp.distinct(1) >= limits.fingerprint_spread_ips:
                inspection.add("ato.fingerprint_spread", ips=round(by_fp.distinct(1)),
                               share=round(by_fp.ratio(0, LONG), 2))
        if (by_asn is not None and by_asn.distinct(0) >= limits.asn_spray_accounts
                and _mostly_failing(by_asn, limits, minimum=10.0)):
            inspection.add("ato.asn_spray", accounts=round(by_asn.distinct(0)))

    def _judge_account(self, inspection: Inspection, limits: AbuseThresholds, account: str, by_account: Any) -> None:
        failures = by_account.count(HOUR)
        ips = by_account.distinct(0)
        extra = inspection.attrs["decision.extra"]
        extra["login"]["prior_failures"] = round(failures, 1)
        # An account under attack is challenged, never blocked: the owner must still get in.
        if failures >= limits.account_failures_challenge:
            inspection.add("ato.account_guessing", failures_1h=round(failures, 1), ips=round(ips))
            inspection.demand(Verdict.CHALLENGE)
        elif ips >= limits.account_spread_ips and failures >= limits.account_spread_failures:
            inspection.add("ato.account_distributed", failures_1h=round(failures, 1), ips=round(ips))
            inspection.demand(Verdict.CHALLENGE)
        if failures >= limits.step_up_failures:
            inspection.attrs["login.step_up"] = True
            extra["login.step_up"] = True
            inspection.add("ato.step_up", failures_1h=round(failures, 1))

    def _judge_site(self, facts: RequestFacts, inspection: Inspection, limits: AbuseThresholds,
                    overall: Any) -> None:
        """The global baseline: a short-term failure share far above the calm one means a mass attack."""
        group = inspection.group.name
        board = self._board
        under_attack = board is not None and board.attack(group, facts.now) is not None
        weight = overall.ratio_weight(0, SHORT)
        if weight <= 0:
            return
        baseline = self._baseline if self._baseline is not None else limits.typical_failure_ratio
        threshold = min(0.95, max(limits.mass_attack_floor, baseline + limits.mass_attack_margin))
        share = overall.ratio(0, SHORT)
        anomalous = weight >= limits.mass_attack_min_attempts and share >= threshold
        if not under_attack and not anomalous and overall.ratio_weight(0, LONG) >= limits.mass_attack_min_attempts:
            # Learn the calm baseline only while calm, slowly, so an attack cannot drag it up.
            self._baseline = 0.95 * baseline + 0.05 * overall.ratio(0, LONG)
        if anomalous:
            inspection.add("ato.mass_attack", share=round(share, 2), baseline=round(baseline, 2),
                           outcomes=round(weight, 1))
            if board is not None:
                reason = f"login failure share {share:.0%} over {weight:.0f} recent outcomes (baseline {baseline:.0%})"
                if board.engage_automatically(group, facts.now, limits.under_attack_hold, reason):
                    log.warning("route group %s switched to under-attack: %s", group, reason)
                    if self._metrics is not None:
                        self._metrics.count("under_attack_engaged", group=group, how="auto")

    # ---- after the response ------------------------------------------------------------------

    async def feedback(self, engine: Any, decision: Any, now: float, status: int | None, event: str | None,
                       fields: dict[str, Any]) -> None:
        login = decision.extra.get("login")
        outcome = self._outcome(engine, decision, status, event, fields, login)
        if outcome is None:
            return
        failed, source = outcome
        if decision.extra.get("login.outcome") is not None:
            return  # one outcome per attempt, whichever way it arrived first
        decision.extra["login.outcome"] = "failed" if failed else "succeeded"
        login = login or {}
        account = normalise_account(fields.get("account")) or login.get("account")
        known_at_request = login.get("account") is not None
        ip = decision.client_ip
        fingerprint = login.get("fingerprint") or decision.extra.get("fingerprint") or ""
        bit = FAILED if failed else 0
        fresh = () if known_at_request else (account,)  # accounts first learnt from the app's report
        observations = [
            Observation("li.ip", ip, count=0.0, seen=1, hits=bit, distinct=fresh),
            Observation("li.net", ip_prefix(ip), count=0.0, seen=1, hits=bit, distinct=fresh),
            Observation("li.all", decision.route_group, count=0.0, seen=1, hits=bit),
        ]
        if fingerprint:
            observations.append(Observation("li.fp", fingerprint, count=0.0, seen=1, hits=bit, distinct=fresh))
        if login.get("asn"):
            observations.append(Observation("li.asn", login["asn"], count=0.0, seen=1, hits=bit, distinct=fresh))
        if account:
            observations.append(Observation("li.acct", account, count=1.0 if failed else 0.0, seen=1, hits=bit,
                                            distinct=() if known_at_request else (ip, fingerprint or None)))
        await engine.store.record(observations, now)
        prior = float(login.get("prior_failures") or 0)
        suspect = not failed and (prior >= thresholds(engine.policy).step_up_failures
                                  or any(code in _ATTACKER_CODES for code in decision.reason_codes))
        record = {"type": "login", "time": round(now, 3), "ref": decision.ref, "account": account,
                  "client_ip": ip, "fingerprint": fingerprint or None, "outcome": decision.extra["login.outcome"],
                  "source": source, "verdict": str(decision.verdict), "score": round(decision.bot_score, 1),
                  "reasons": list(decision.reason_codes), "prior_failures": prior}
        if suspect:
            record["takeover_suspected"] = True
            decision.extra["login.takeover_suspected"] = True
            if account:
                await engine.store.put_record("ato.suspect", account, {"time": now, "ref": decision.ref,
                                                                       "client_ip": ip}, 86400.0, now)
        engine.decision_log.write_record(record)
        engine.metrics.count("login_outcomes", outcome=record["outcome"], suspected=str(suspect).lower())

    def _outcome(self, engine: Any, decision: Any, status: int | None, event: str | None,
                 fields: dict[str, Any], login: dict | None) -> tuple[bool, str] | None:
        """(failed?, how we learnt it) for a login outcome, or None when this feedback is not one."""
        if event is not None:
            family, failed = event_family(event)
            if family != "login" or failed is None:
                return None
            return failed, "app"
        if status is None or login is None or was_reported(decision, "login"):
            return None
        group = engine.policy.group(decision.route_group)
        if group is None:
            return None
        derived = status_event(group, decision.method, decision.path, status, fields.get("response_headers"))
        family, failed = event_family(derived) if derived else (None, None)
        if family != "login" or failed is None:
            return None
        return failed, "status"


_ATTACKER_CODES = frozenset(("ato.username_spray", "ato.ip_failures", "ato.fingerprint_spray",
                             "ato.fingerprint_spread", "ato.prefix_spray"))
