"""Switch signal: honours incident switches — allow/deny entries and "under attack" route groups.

It runs last, so an allow entry can set aside what the other signals demanded: an operator's
allow entry means allow (policy rules still apply). A deny entry blocks. A group under attack
challenges every request in it (a client that already passed a challenge carries a clearance,
and the engine lets it through).
"""

from __future__ import annotations

from typing import Any

from shieldware.decision import Verdict
from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.fastlane.plan import IDLE, LanePart
from shieldware.outcomes import form_field
from shieldware.signals.base import Inspection
from shieldware.signals.clientkeys import client_fingerprint
from shieldware.switches import switchboard_for

register_reason("list.allow", -100, "An operator's allow entry covers this client (see `shieldware allow list`).")
register_reason("list.deny", 100, "An operator's deny entry covers this client (see `shieldware deny list`).")
register_reason("switch.under_attack", 0, "This part of the shop is switched to 'under attack': every visitor is "
                "challenged until the attack subsides.")


class SwitchSignal:
    name = "switches"

    def __init__(self) -> None:
        self._board: Any = None

    def bind(self, engine: Any) -> None:
        self._board = switchboard_for(engine)

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        board = self._board
        if board is None:
            return
        board.maybe_refresh(facts.now)
        if board.has_entries:
            account = form_field(facts, "account")
            fingerprint = client_fingerprint(facts, inspection)
            entry = board.match(facts.client_ip, account, fingerprint, facts.now)
            if entry is not None:
                detail = {"target": entry.get("target"), "value": entry.get("value"), "reason": entry.get("reason"),
                          "until": entry.get("until")}
                if entry.get("list") == "deny":
                    inspection.add("list.deny", **detail)
                    inspection.demand(Verdict.BLOCK)
                    return
                inspection.add("list.allow", **detail)
                inspection.attrs["list.allowed"] = True
                inspection.demands.clear()
                return
        self._under_attack(facts, inspection)

    def lane_part(self, facts: RequestFacts, inspection: Inspection) -> LanePart | None:
        """Only while no entry is listed and no group is under attack (the lane is disarmed as soon
        as the switchboard changes, see shieldware/fastlane/lane.py)."""
        board = self._board
        return IDLE if board is None or board.quiet(facts.now) else None

    def assess(self, facts: RequestFacts, inspection: Inspection) -> None:
        # Runs after every other signal's assess: an allow entry sets their demands aside too,
        # and a group the login signal just switched to "under attack" applies from this request.
        if inspection.attrs.get("list.allowed"):
            inspection.demands.clear()
        elif not inspection.attrs.get("switch.challenged") and self._board is not None:
            self._under_attack(facts, inspection)

    def _under_attack(self, facts: RequestFacts, inspection: Inspection) -> None:
        switch = self._board.attack(inspection.group.name, facts.now)
        if switch is not None:  # a client with a valid clearance passes: the engine turns this into allow
            inspection.add("switch.under_attack", auto=bool(switch.get("auto")), since=switch.get("since"))
            inspection.demand(Verdict.CHALLENGE)
            inspection.attrs["switch.challenged"] = True
