"""Biometrics signal: the session's stored telemetry verdict joins the bot score of its later requests.

The collector's batches are scored by the telemetry endpoint (shieldware/biometrics/endpoint.py)
and kept per session in the store. For a request carrying the session cookie this signal reads
that record — one `get_record`, only when the cookie is there — and re-emits its reasons, so a
session that moved like a script is scored like one on the checkout, and one that moved like a
person earns a little trust. Route groups with `require_telemetry` demand a challenge when there
is no recent, human-like record for the session.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from shieldware.biometrics import settings as _settings  # noqa: F401  (registers the policy fields)
from shieldware.biometrics.endpoint import RECORD_KIND, user_agent_hash, valid_session_id
from shieldware.biometrics.settings import BiometricsSettings, TelemetryRequirement
from shieldware.decision import Verdict
from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.fastlane.plan import IDLE, LanePart
from shieldware.policy import register_attribute
from shieldware.signals.base import Inspection

register_reason("bio.telemetry_missing", 0, "This route group requires recent human-like telemetry from the "
                "browser for the session, and there was none (or it did not look human): challenged.")

register_attribute("bio.verdict", "what the session's browser telemetry says: human, automated, or none")
HUMAN_FROM = 0.5


class BiometricsSignal:
    name = "biometrics"

    def __init__(self) -> None:
        self.store = None
        self.cookie = BiometricsSettings().cookie

    def bind(self, engine: object) -> None:
        self.store = engine.store
        self.cookie = engine.policy.section("biometrics").cookie

    def lane_cookies(self, engine: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (), (self.cookie,)  # a session with telemetry has a record to read per request

    def lane_part(self, facts: RequestFacts, inspection: Inspection) -> LanePart | None:
        # Reached only when `inspect` asked for no record (the engine drafts no plan after a lookup).
        return IDLE

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> Coroutine[Any, Any, None] | None:
        """The record read to run (the engine awaits it), or None: no cookie and nothing required."""
        requirement: TelemetryRequirement | None = inspection.group.settings.get("require_telemetry")
        required = requirement is not None and requirement.applies_to(facts.method)
        session_id = valid_session_id(facts.cookies.get(self.cookie)) if facts.cookies else None
        if session_id is None and not required:
            return None
        return self.lookup(facts, inspection, session_id, requirement if required else None)

    async def lookup(self, facts: RequestFacts, inspection: Inspection, session_id: str | None,
                     requirement: TelemetryRequirement | None) -> None:
        """Read the session's record (one store call), re-emit its reasons, apply the requirement."""
        record = None
        if session_id is not None and self.store is not None:
            record = await self.store.get_record(RECORD_KIND, session_id, facts.now)
            if record is not None and record.get("ua") != user_agent_hash(facts.user_agent):
                record = None  # a session cookie carried to another browser brings no verdict with it
        if record is None:
            inspection.attrs["bio.verdict"] = "none"
        else:
            human = float(record.get("human", 0.0))
            inspection.attrs["bio.verdict"] = "human" if human >= HUMAN_FROM else "automated"
            for reason in record.get("reasons", ()):
                inspection.add_weighted(reason["code"], float(reason["weight"]), **reason.get("detail", {}))
        if requirement is None:
            return
        if record is None:
            inspection.add("bio.telemetry_missing", why="no telemetry for this session")
            inspection.demand(Verdict.CHALLENGE)
            return
        age = facts.now - float(record.get("at", 0.0))
        if age > requirement.max_age or float(record.get("human", 0.0)) < requirement.min_human:
            inspection.add("bio.telemetry_missing", why="telemetry too old or not human-like",
                           age_s=round(age), human=record.get("human"))
            inspection.demand(Verdict.CHALLENGE)
