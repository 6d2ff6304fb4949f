"""Policy presets: named bundles of rules about crawlers (`presets: [block-ai-crawlers, ...]`)."""

from __future__ import annotations

from typing import Any

from shieldware.policy import register_rule_expander, register_section

# Each preset is a list of ordinary rules; they are appended after the policy file's own rules, so
# a rule the shop writes always wins over a preset.
PRESETS: dict[str, list[dict[str, Any]]] = {
    "block-ai-crawlers": [
        {"name": "preset:block-ai-crawlers", "when": {"ua.category": ["ai-crawler"]}, "action": "block"},
    ],
    "block-ai-assistants": [
        {"name": "preset:block-ai-assistants", "when": {"ua.category": ["ai-assistant"]}, "action": "block"},
    ],
    "allow-search-engines": [
        {
            "name": "preset:allow-search-engines",
            "when": {"ua.category": ["search-engine"], "verified_bot": True},
            "action": "allow",
        },
    ],
    "allow-social-previews": [
        # Verified preview fetchers pass; ones with no published ranges (Slackbot, Discordbot, …) only
        # lose points on GET/HEAD, so writing "Slackbot" into a scraper's UA is not a free pass.
        {
            "name": "preset:allow-social-previews",
            "when": {"ua.category": ["social-preview"], "crawler.claim": ["verified"]},
            "action": "allow",
        },
        {
            "name": "preset:allow-social-previews-unlisted",
            "when": {
                "ua.category": ["social-preview"],
                "crawler.claim": ["unlisted"],
                "method": ["GET", "HEAD"],
            },
            "action": "weigh",
            "weight": -30,
        },
    ],
}


def _parse_presets(raw: Any, where: str, check: Any) -> tuple[str, ...]:
    names = check.string_list(raw, where)
    for i, name in enumerate(names):
        if name not in PRESETS:
            check.fail(f"{where}[{i}]", "one of " + ", ".join(sorted(PRESETS)), name)
    return tuple(n for n in names if n in PRESETS)


def _expand(sections: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (f"presets.{name}[{i}]", rule)
        for name in sections.get("presets", ())
        for i, rule in enumerate(PRESETS[name])
    ]


register_section("presets", _parse_presets, tuple)
register_rule_expander(_expand)
