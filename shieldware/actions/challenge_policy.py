"""The `challenge:` policy section: difficulty, lifetimes, client binding, the no-JS path, page texts."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from shieldware.policy import register_section

# Built-in page texts. Shops translate or reword them with `challenge.texts.<lang>.<key>`.
DEFAULT_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Checking your browser",
        "message": "Before serving this page the shop makes sure the visit comes from a browser. "
                   "This takes a moment and happens only once.",
        "working": "Checking… this usually takes less than a second.",
        "done": "Done. Taking you to the page…",
        "failed": "The check did not succeed. Please reload the page to try again.",
        "nojs_wait": "JavaScript is off, so this check takes a few seconds longer. Please wait; the page "
                     "continues by itself.",
        "nojs_blocked": "This check needs JavaScript, and it is turned off in your browser. Please turn "
                        "it on and reload the page.",
        "cookies_title": "Cookies are needed",
        "cookies": "Your browser passed the check but did not keep the cookie that remembers it, so the shop "
                   "would ask again on every page. Please allow cookies for this site, then try again.",
        "try_again": "Try again",
        "reference": "Reference",
        "help": "If this keeps happening, contact the shop's support and quote the reference.",
    },
    "de": {
        "title": "Ihr Browser wird geprüft",
        "message": "Bevor der Shop diese Seite zeigt, prüft er, dass der Besuch von einem Browser kommt. "
                   "Das dauert einen Moment und geschieht nur einmal.",
        "working": "Prüfung läuft… das dauert meist weniger als eine Sekunde.",
        "done": "Fertig. Sie werden weitergeleitet…",
        "failed": "Die Prüfung ist fehlgeschlagen. Bitte laden Sie die Seite neu.",
        "nojs_wait": "JavaScript ist ausgeschaltet, daher dauert die Prüfung einige Sekunden länger. Bitte "
                     "warten Sie; die Seite lädt von selbst weiter.",
        "nojs_blocked": "Diese Prüfung braucht JavaScript, das in Ihrem Browser ausgeschaltet ist. Bitte "
                        "schalten Sie es ein und laden Sie die Seite neu.",
        "cookies_title": "Cookies werden benötigt",
        "cookies": "Ihr Browser hat die Prüfung bestanden, aber das Cookie nicht behalten, das sich daran "
                   "erinnert; der Shop würde auf jeder Seite erneut fragen. Bitte erlauben Sie Cookies für "
                   "diese Seite und versuchen Sie es erneut.",
        "try_again": "Erneut versuchen",
        "reference": "Referenz",
        "help": "Wenn das immer wieder passiert, wenden Sie sich an den Support und nennen Sie die Referenz.",
    },
}


@dataclass(frozen=True, slots=True)
class ChallengeSettings:
    """Typed `challenge:` section. Times are seconds; difficulty is leading zero bits of SHA-256."""

    difficulty: int = 14
    max_difficulty: int = 20
    points_per_extra_bit: float = 10.0
    expires_after: float = 300.0
    clearance_lifetime: float = 3600.0
    cookie_name: str = "shield_clearance"
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    bind_user_agent: bool = True
    bind_fingerprint: bool = False
    nojs_max_score: float | None = 20.0
    nojs_min_wait: float = 5.0
    nojs_clearance_lifetime: float = 900.0
    reuse_max_addresses: int = 4
    reuse_max_fingerprints: int = 3
    texts: dict[str, dict[str, str]] = field(default_factory=dict)

    def difficulty_for(self, bot_score: float, challenge_above: float | None) -> int:
        """Base difficulty, one more bit per `points_per_extra_bit` the score is over the threshold."""
        over = max(0.0, bot_score - (challenge_above or 0.0))
        extra = int(over // self.points_per_extra_bit) if self.points_per_extra_bit > 0 else 0
        return min(self.max_difficulty, self.difficulty + extra)

    def nojs_allowed(self, bot_score: float) -> bool:
        return self.nojs_max_score is not None and bot_score <= self.nojs_max_score

    def texts_for(self, accept_language: str) -> tuple[str, dict[str, str]]:
        """The page language and its texts: the first Accept-Language we have, English otherwise."""
        for part in accept_language.split(",")[:8]:
            lang = part.split(";", 1)[0].strip().lower().split("-", 1)[0]
            if lang in DEFAULT_TEXTS or lang in self.texts:
                translated = DEFAULT_TEXTS.get(lang, {})
                return lang, {**DEFAULT_TEXTS["en"], **translated, **self.texts.get(lang, {})}
        return "en", {**DEFAULT_TEXTS["en"], **self.texts.get("en", {})}


_INT_RANGES = {"difficulty": (1, 32), "max_difficulty": (1, 32), "ipv4_prefix": (0, 32),
               "ipv6_prefix": (0, 128), "reuse_max_addresses": (1, 10_000),
               "reuse_max_fingerprints": (1, 10_000)}
_SECONDS = ("expires_after", "clearance_lifetime", "nojs_min_wait", "nojs_clearance_lifetime")
_BOOLS = ("bind_user_agent", "bind_fingerprint")


def parse_challenge_section(raw: Any, where: str, check: Any) -> ChallengeSettings:
    raw = check.mapping(raw, where)
    names = [f.name for f in fields(ChallengeSettings)]
    check.unknown_keys(raw, names, where)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"{where}.{key}"
        if key not in names:
            continue  # already reported by unknown_keys
        if key in _INT_RANGES:
            low, high = _INT_RANGES[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                check.fail(at, f"a whole number from {low} to {high}", value)
                continue
        elif key in _SECONDS or key == "points_per_extra_bit":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                check.fail(at, "a number of seconds (0 or more)" if key in _SECONDS else "a number of points",
                           value)
                continue
            value = float(value)
        elif key in _BOOLS:
            if not isinstance(value, bool):
                check.fail(at, "true or false", value)
                continue
        elif key == "nojs_max_score":
            value = check.threshold(value, at)
        elif key == "cookie_name":
            if not isinstance(value, str) or not value.replace("_", "").replace("-", "").isalnum():
                check.fail(at, "a cookie name of letters, digits, '_' and '-'", value)
                continue
        elif key == "texts":
            value = _parse_texts(value, at, check)
        values[key] = value
    settings = ChallengeSettings(**values)
    if settings.max_difficulty < settings.difficulty:
        check.fail(f"{where}.max_difficulty", f"at least difficulty ({settings.difficulty})",
                   settings.max_difficulty)
    return settings


def _parse_texts(value: Any, where: str, check: Any) -> dict[str, dict[str, str]]:
    texts: dict[str, dict[str, str]] = {}
    for lang, entries in check.mapping(value, where).items():
        entries = check.mapping(entries, f"{where}.{lang}")
        check.unknown_keys(entries, DEFAULT_TEXTS["en"], f"{where}.{lang}")
        texts[str(lang).lower()] = {str(k): str(v) for k, v in entries.items() if k in DEFAULT_TEXTS["en"]}
    return texts


register_section("challenge", parse_challenge_section, ChallengeSettings)
