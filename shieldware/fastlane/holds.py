"""Holds: a flagged client's assessment stands for a moment while the same findings fire.

A planned request whose windows cross a trigger is assessed on the Python path: the window
signals turn its window answers into evidence and demands, and the policy into a verdict. For a
flood that is every request, and the assessment costs several times what serving the request
does. The lane's triggers are the traffic signal's findings as data, one trigger per finding (a
test holds the two to each other), so the bits of the triggers that fire name the findings the
assessment would add. While the same client of the same plan fires the same bits, it would reach
the same verdict, score, reasons and rule: only the numbers in the reasons' details would move.

So the assessment is held for `seconds` (the traffic policy's `hold_findings_s`): a request in
that time gets a decision of its own (reference, time, path) with the held one's verdict and
reasons, and `extra["held_from"]` naming the decision whose numbers they are. A different set of
findings (one more fires, one stops) is assessed afresh at once, so a hold never delays a
verdict, whichever way it moves; a quiet request is the plan's, as before.
"""

from __future__ import annotations

from typing import Any

from shieldware.decision import Decision, new_reference

# Entries kept at most (one per flagged client, plan and set of findings; a few kB each, most of it
# the reasons). Past it the ones run out are dropped, or all when hardly any has: a flood from more
# flagged addresses than this a second costs its assessments again, nothing more.
MAX_HOLDS = 8_192


class FindingHolds:
    """Held assessments by (plan seed, client address, fired trigger bits)."""

    __slots__ = ("_held", "answered", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.answered = 0  # requests answered from a hold (the metrics' fast-lane outcome "held")
        # key → (seed, decision, until); the seed is kept so that its id is not reused while held
        self._held: dict[tuple[int, str, int], tuple[Any, Decision, float]] = {}

    def find(self, seed: Any, client_ip: str, fired: int, now: float, path: str) -> Decision | None:
        """A decision for this request from a held assessment, or None (assess it)."""
        entry = self._held.get((id(seed), client_ip, fired))
        if entry is None or entry[0] is not seed or now >= entry[2] or now < entry[1].time:
            return None
        self.answered += 1
        return repeated(entry[1], now, path)

    def keep(self, seed: Any, client_ip: str, fired: int, decision: Decision) -> None:
        """Hold a fresh assessment (nothing when holds are off)."""
        if self.seconds <= 0:
            return
        if len(self._held) >= MAX_HOLDS:
            self._drop_run_out(decision.time)
        self._held[(id(seed), client_ip, fired)] = (seed, decision, decision.time + self.seconds)

    def _drop_run_out(self, now: float) -> None:
        # A copy to walk: another thread's request may keep or find a hold meanwhile.
        run_out = [key for key, (_, _, until) in list(self._held.items()) if now >= until]
        if len(run_out) < MAX_HOLDS // 4:  # hardly any: a scan per few keeps would cost more than it saves
            self._held.clear()
            return
        for key in run_out:
            self._held.pop(key, None)

    def clear(self) -> None:
        self._held.clear()

    def __len__(self) -> int:
        return len(self._held)


def repeated(held: Decision, now: float, path: str) -> Decision:
    """The held decision for another request of the same client: its own reference, time and path."""
    return Decision(
        ref=new_reference(), verdict=held.verdict, bot_score=held.bot_score, reasons=held.reasons,
        route_group=held.route_group, time=now, client_ip=held.client_ip, method=held.method, path=path,
        mode=held.mode, rule=held.rule, retry_after=held.retry_after, user_agent=held.user_agent,
        extra={**held.extra, "held_from": held.ref},
    )
