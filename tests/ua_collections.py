"""Public user-agent collections and the tuning / held-out split the accuracy test and bench share."""

from __future__ import annotations

import zlib
from pathlib import Path

import crawleruseragents

from shieldware.signals.botcatalogue import BotCatalogue, shipped_catalogue
from shieldware.signals.useragent import UserAgentClassifier

FIXTURES = Path(__file__).parent / "fixtures" / "ua"
# Only this collection was looked at while choosing heuristics; the others are held out.
TUNING_BROWSER_FILES = ("fake-useragent.txt",)
HELD_OUT_BROWSER_FILES = (
    "intoli-user-agents.txt",
    "top-user-agents.txt",
    "curl-impersonate-and-user-agents-tests.txt",
)


def browser_user_agents(name: str) -> list[str]:
    return [line for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def held_out_pattern(pattern: str) -> bool:
    """A fixed fifth of crawler-user-agents, chosen by a hash of the pattern (stable across runs)."""
    return zlib.crc32(pattern.encode()) % 5 == 0


def crawler_instances(held_out: bool) -> list[str]:
    return [
        instance
        for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA
        if held_out_pattern(entry["pattern"]) == held_out
        for instance in entry["instances"]
    ]


def classifier_without_held_out() -> UserAgentClassifier:
    """The shipped classifier minus the held-out crawler patterns: what it catches of those bots
    it catches by the generic heuristics, as it would catch a bot nobody has listed yet."""
    held = {
        e["pattern"] for e in crawleruseragents.CRAWLER_USER_AGENTS_DATA if held_out_pattern(e["pattern"])
    }
    catalogue = shipped_catalogue()
    return UserAgentClassifier(
        BotCatalogue(
            [e for e in catalogue.entries if not (e.origin == "crawler-user-agents" and e.pattern in held)]
        )
    )


def ai_robot_names() -> list[str]:
    return [e.name for e in shipped_catalogue().entries if e.origin == "ai.robots.txt"]


def classifier_without_ai_lists() -> UserAgentClassifier:
    """The classifier without any AI-robot entry (neither ai.robots.txt nor crawler-user-agents' AI ones)."""
    names = {n.lower() for n in ai_robot_names()}
    catalogue = shipped_catalogue()
    kept = [
        e
        for e in catalogue.entries
        if e.origin == "curated"
        or (
            e.origin == "crawler-user-agents"
            and e.category not in ("ai-crawler", "ai-assistant")
            and e.name.lower() not in names
        )
    ]
    return UserAgentClassifier(BotCatalogue(kept))


# How AI robots present themselves: a bare product token, the usual "compatible" form, and the
# Chrome-like form GPTBot and ClaudeBot use.
AI_UA_FORMS = (
    "{name}/1.0",
    "Mozilla/5.0 (compatible; {name}/1.0; +https://example.org/bot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; {name}/1.0) Chrome/120.0.0.0 "
    "Safari/537.36",
)


def ai_robot_user_agents() -> list[str]:
    return [form.format(name=name) for name in ai_robot_names() for form in AI_UA_FORMS]


def flagged_share(classify, user_agents: list[str]) -> tuple[float, list[str]]:
    flagged = [ua for ua in user_agents if classify(ua).is_bot]
    return len(flagged) / len(user_agents), flagged
