"""Policy presets for crawlers: what each expands to, how it decides, and how mistakes are reported."""

from __future__ import annotations

import asyncio

import pytest

from shieldware import Engine, Verdict, facts_from_headers
from shieldware.policy import PolicyError, default_policy, policy_from_text

GPTBOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)"
)
CHATGPT_USER = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; +https://openai.com/bot"
SLACKBOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
FACEBOOK = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
OPENAI_IP = "4.151.71.177"  # lord-alfred openai list: 4.151.71.176/28
FACEBOOK_IP = "31.13.64.1"  # lord-alfred facebook list: 31.13.64.0/18 range


def decide(policy, ua, ip="203.0.113.50", path="/product/3", method="GET"):
    facts = facts_from_headers(ip, method, path, 0.0, [("host", "shop.example"), ("user-agent", ua)])
    return asyncio.run(Engine(policy).decide(facts))


def test_default_policy_lists_search_and_preview_presets_after_its_own_rules():
    names = [rule.name for rule in default_policy().rules]
    assert names[0] == "health-checks"
    assert names[1:] == [
        "preset:allow-search-engines",
        "preset:allow-social-previews",
        "preset:allow-social-previews-unlisted",
    ]


def test_block_ai_crawlers_blocks_gptbot_even_from_openai_ranges_but_not_assistants():
    policy = default_policy(presets=["block-ai-crawlers", "allow-search-engines"])
    blocked = decide(policy, GPTBOT, ip=OPENAI_IP)
    assert blocked.verdict is Verdict.BLOCK and blocked.rule == "preset:block-ai-crawlers"
    assistant = decide(policy, CHATGPT_USER, ip=OPENAI_IP)
    assert assistant.rule is None
    assert (
        decide(default_policy(presets=["block-ai-assistants"]), CHATGPT_USER, ip=OPENAI_IP).verdict
        is Verdict.BLOCK
    )


def test_without_the_preset_a_verified_ai_crawler_is_just_weighed():
    decision = decide(default_policy(), GPTBOT, ip=OPENAI_IP)
    assert decision.rule is None and decision.verdict is Verdict.ALLOW
    assert "ua.verified_crawler" in [r.code for r in decision.reasons]


def test_social_previews_keep_working_and_a_fake_one_does_not():
    policy = default_policy()
    verified = decide(policy, FACEBOOK, ip=FACEBOOK_IP)
    assert verified.verdict is Verdict.ALLOW and verified.rule == "preset:allow-social-previews"
    unlisted = decide(policy, SLACKBOT)
    assert unlisted.verdict is Verdict.ALLOW
    assert "policy.weigh" in [r.code for r in unlisted.reasons] and unlisted.bot_score < 40
    fake = decide(policy, FACEBOOK, ip="3.4.12.4")
    assert fake.verdict is Verdict.BLOCK and "net.fake_crawler" in [r.code for r in fake.reasons]
    # The unlisted preview discount is for reading pages, not for posting forms.
    assert "policy.weigh" not in [
        r.code for r in decide(policy, SLACKBOT, method="POST", path="/cart/add").reasons
    ]


def test_a_shops_own_rule_wins_over_a_preset():
    text = """
version: 1
presets: [block-ai-crawlers]
groups: [{name: browse, paths: ["/*"]}]
rules:
  - name: let-gptbot-read-the-blog
    when: {path: ["/blog/*"], ua.name: GPTBot}
    action: allow
"""
    policy = policy_from_text(text, "shop.yaml")
    assert decide(policy, GPTBOT, path="/blog/post").rule == "let-gptbot-read-the-blog"
    assert decide(policy, GPTBOT, path="/product/1").rule == "preset:block-ai-crawlers"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\npresets: [block-all-the-bots]\n", "presets[0]: expected one of allow-search-engines"),
        ("version: 1\npresets: {a: 1}\n", "presets: expected a string or a list of strings"),
        ("version: 1\ncrawlers: {fcrdns: maybe}\n", "crawlers.fcrdns: expected true or false"),
        (
            "version: 1\ncrawlers: {fcrdns_timeout: -1}\n",
            "crawlers.fcrdns_timeout: expected a positive number",
        ),
    ],
)
def test_preset_and_crawler_mistakes_name_file_and_field(text, expected):
    with pytest.raises(PolicyError) as raised:
        policy_from_text(text, "shop.yaml")
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems
    assert "shop.yaml" in str(raised.value)


def test_rules_match_on_fingerprint_ua_name_and_verified_bot():
    from shieldware.facts import facts_from_headers as make
    from shieldware.signals.headers import header_fingerprint

    headers = [
        ("host", "shop.example"),
        ("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1)"),
        ("x-a", "1"),
    ]
    fingerprint = header_fingerprint(make("203.0.113.1", "GET", "/", 0.0, headers))
    text = f"""
version: 1
groups: [{{name: browse, paths: ["/*"]}}]
rules:
  - {{name: botnet-stack, when: {{fingerprint: "{fingerprint}"}}, action: block}}
  - {{name: real-google, when: {{ua.name: Googlebot, verified_bot: true}}, action: allow}}
"""
    policy = policy_from_text(text, "shop.yaml")
    engine = Engine(policy)
    blocked = asyncio.run(engine.decide(make("203.0.113.1", "GET", "/", 0.0, headers)))
    assert blocked.rule == "botnet-stack"
    allowed = asyncio.run(engine.decide(make("66.249.66.1", "GET", "/", 0.0, headers[:2])))
    assert allowed.rule == "real-google"
