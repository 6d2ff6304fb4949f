"""Clearance signal: a valid challenge clearance lowers the score; a bad or shared one is evidence."""

from __future__ import annotations

from typing import Any

from shieldware.actions.challenge_policy import ChallengeSettings
from shieldware.actions.proof import (
    Binding,
    Rejected,
    check_clearance_binding,
    client_binding,
    verify_clearance_signature,
)
from shieldware.actions.tokens import Keyring, default_keyring
from shieldware.facts import RequestFacts
from shieldware.fastlane.plan import IDLE, LanePart
from shieldware.policy import register_attribute
from shieldware.signals.base import Inspection

register_attribute("clearance", "the challenge clearance the client carries: none, valid or invalid")

SATISFIED = "challenge.satisfied"


class ReuseTracker:
    """Which addresses and fingerprints presented each clearance, bounded in memory.

    One person's clearance shows up from one or two addresses (a phone switching networks);
    a clearance collected once and handed to a scraper fleet shows up from many. Per process:
    with several workers each sees its share, so the limits are per worker.
    """

    def __init__(self, max_clearances: int = 50_000) -> None:
        self.max_clearances = max_clearances
        self._seen: dict[str, tuple[set[str], set[str]]] = {}
        self.shared: set[str] = set()

    def note(self, clearance_id: str, client_ip: str, fingerprint: str) -> tuple[int, int]:
        entry = self._seen.get(clearance_id)
        if entry is None:
            if len(self._seen) >= self.max_clearances:
                # Forget the oldest clearance (dicts keep insertion order).
                oldest = next(iter(self._seen))
                del self._seen[oldest]
                self.shared.discard(oldest)
            entry = self._seen[clearance_id] = (set(), set())
        addresses, fingerprints = entry
        # Sets stop growing past a cap: beyond it the answer ("shared") no longer changes.
        if len(addresses) < 64:
            addresses.add(client_ip)
        if len(fingerprints) < 64:
            fingerprints.add(fingerprint)
        return len(addresses), len(fingerprints)

    def mark_shared(self, clearance_id: str) -> None:
        self.shared.add(clearance_id)


class ClearanceSignal:
    name = "clearance"

    def __init__(self, keyring: Keyring | None = None, settings: ChallengeSettings | None = None) -> None:
        self._keyring = keyring
        self.settings = settings or ChallengeSettings()
        self.reuse = ReuseTracker()
        # Verified signatures by token: a browser sends the same cookie on every request.
        self._verified: dict[str, dict[str, Any] | Rejected] = {}
        self._bindings: dict[tuple, Binding] = {}

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = default_keyring()
        return self._keyring

    @keyring.setter
    def keyring(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._verified.clear()

    def bind(self, engine: Any) -> None:
        self.settings = engine.policy.section("challenge")

    def _claims(self, token: str) -> dict[str, Any]:
        known = self._verified.get(token)
        if known is None:
            try:
                known = verify_clearance_signature(self.keyring, token)
            except Rejected as exc:
                known = exc
            if len(self._verified) >= 20_000:
                self._verified.clear()
            self._verified[token] = known
        if isinstance(known, Rejected):
            raise known
        return known

    def _binding_once(self, token: str, clearance_id: str, facts: RequestFacts) -> Binding:
        """The client's binding, computed (and counted for reuse) once per client and clearance.

        A browser repeats the same cookie, address and headers on every request, so hashing
        them and updating the reuse sets once per combination keeps the hot path to a lookup.
        """
        header_map = facts.header_map
        key = (token, facts.client_ip, facts.user_agent, header_map.get("accept-language"),
               header_map.get("sec-ch-ua"))
        binding = self._bindings.get(key)
        if binding is None:
            settings = self.settings
            binding = client_binding(facts, settings)
            if len(self._bindings) >= 20_000:
                self._bindings.clear()
            self._bindings[key] = binding
            addresses, fingerprints = self.reuse.note(clearance_id, facts.client_ip, binding.fingerprint)
            if addresses > settings.reuse_max_addresses or fingerprints > settings.reuse_max_fingerprints:
                self.reuse.mark_shared(clearance_id)
        return binding

    def lane_cookies(self, engine: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (), (self.settings.cookie_name,)  # a clearance is verified on the Python path

    def lane_part(self, facts: RequestFacts, inspection: Inspection) -> LanePart | None:
        return IDLE if inspection.attrs.get("clearance") == "none" else None

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        settings = self.settings
        token = facts.cookies.get(settings.cookie_name)
        if token is None:
            inspection.attrs["clearance"] = "none"
            return
        inspection.attrs["clearance"] = "invalid"
        try:
            claims = self._claims(token)
        except Rejected as exc:
            inspection.add(exc.code, **exc.detail)
            return
        binding = self._binding_once(token, claims["id"], facts)
        if claims["id"] in self.reuse.shared:
            inspection.add("clearance.reuse", clearance=claims["id"])
            return
        try:
            check_clearance_binding(claims, binding, settings, facts.now)
        except Rejected as exc:
            inspection.add(exc.code, clearance=claims["id"], **exc.detail)
            return
        inspection.attrs["clearance"] = "valid"
        inspection.attrs[SATISFIED] = True
        inspection.add("clearance.valid", mode=claims.get("m", "pow"),
                       expires_in=round(claims["exp"] - facts.now))
        if claims.get("auto"):
            inspection.add("clearance.automation", clearance=claims["id"])
