"""Challenge building blocks, time as an argument: keys, tokens, policy section, binding, engine rule."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re

import httpx
import pytest

from shieldware.actions.challenge import clean_telemetry, install_challenges
from shieldware.actions.challenge_policy import ChallengeSettings
from shieldware.actions.proof import (
    Rejected,
    client_binding,
    issue_challenge,
    issue_clearance,
    safe_return_url,
    verify_solution,
)
from shieldware.actions.tokens import (
    KeyConfigError,
    Keyring,
    SigningKey,
    TokenRejected,
    keyring_from_environment,
)
from shieldware.decision import Verdict
from shieldware.demo import build_demo_app
from shieldware.engine import Engine
from shieldware.facts import facts_from_headers
from shieldware.policy import PolicyError, default_policy
from tests.challenge_support import PRODUCT_RULE, keyring, page_config, solve, wrong_solution
from tests.support import CHROME_NAVIGATION

NOW = 1_800_000_000.0
SECRET_A = "a" * 32
SECRET_B = "b" * 32


def chrome_facts(path: str = "/product/1", ip: str = "198.51.100.7", now: float = NOW,
                 cookie: str | None = None, **replace: str):
    headers = [(k, replace.pop(k, v)) for k, v in CHROME_NAVIGATION]
    if cookie:
        headers.append(("cookie", f"shield_clearance={cookie}"))
    return facts_from_headers(ip, "GET", path, now, headers)


# ---- keys and tokens ---------------------------------------------------------------------------

def test_tokens_verify_only_with_their_key_and_purpose():
    ring = keyring("k1")
    token = ring.sign("clr", {"id": "x", "exp": 5})
    assert ring.verify("clr", token) == {"id": "x", "exp": 5}
    with pytest.raises(TokenRejected) as wrong_purpose:
        ring.verify("chl", token)  # a clearance is never accepted as a challenge, or back
    assert wrong_purpose.value.reason == "forged"
    kid, claims, mac = token.split(".")
    for bad, reason in ((f"{kid}.{claims}x.{mac}", "forged"), (f"zz.{claims}.{mac}", "unknown_key"),
                        ("nonsense", "malformed"), (f"{kid}.{claims}.!!", "malformed"), ("", "malformed")):
        with pytest.raises(TokenRejected) as refused:
            ring.verify("clr", bad)
        assert refused.value.reason == reason
    retired = keyring("k2", retired=("k1",))
    with pytest.raises(TokenRejected) as old:
        retired.verify("clr", token)
    assert old.value.reason == "retired_key"


def test_keys_from_environment_and_file(tmp_path):
    ring = keyring_from_environment({"SHIELDWARE_KEYS": f"new:{SECRET_A}, old:{SECRET_B}"})
    assert [k.kid for k in ring.keys] == ["new", "old"] and ring.signing_key.kid == "new"
    key_file = tmp_path / "keys"
    key_file.write_text(f"# rotation: newest first\nk3 {SECRET_A}\nk2 {SECRET_B}\nk1 {'c' * 32} retired\n")
    ring = keyring_from_environment({"SHIELDWARE_KEY_FILE": str(key_file), "SHIELDWARE_RETIRED_KEYS": "k0"})
    assert [k.kid for k in ring.keys] == ["k3", "k2"] and ring.retired == {"k1", "k0"}
    with pytest.raises(KeyConfigError, match="shorter than 16 bytes"):
        keyring_from_environment({"SHIELDWARE_KEYS": "k:short"})
    with pytest.raises(KeyConfigError, match="KID:SECRET"):
        keyring_from_environment({"SHIELDWARE_KEYS": "justasecretwithoutid"})
    with pytest.raises(KeyConfigError, match="cannot read"):
        keyring_from_environment({"SHIELDWARE_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(KeyConfigError, match="duplicate"):
        Keyring([SigningKey("a", SECRET_A.encode()), SigningKey("a", SECRET_B.encode())])


def test_no_key_means_a_process_key_and_a_loud_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="shieldware.tokens"):
        ring = keyring_from_environment({})
    assert ring.ephemeral and "no signing keys configured" in caplog.text


# ---- the policy section -------------------------------------------------------------------------

def test_challenge_section_is_validated_with_field_names():
    policy = default_policy(challenge={"difficulty": 12, "bind_fingerprint": True, "nojs_max_score": None,
                                       "texts": {"fr": {"title": "Vérification de votre navigateur"}}})
    settings = policy.section("challenge")
    assert settings.difficulty == 12 and settings.bind_fingerprint and settings.nojs_max_score is None
    assert settings.texts_for("fr-CH,fr;q=0.9")[1]["title"] == "Vérification de votre navigateur"
    assert default_policy().section("challenge") == ChallengeSettings()
    with pytest.raises(PolicyError) as bad:
        default_policy(challenge={"difficulty": 0, "max_difficulty": "hard", "expires_after": -1,
                                  "bind_user_agent": "yes", "cookie_name": "a b", "colour": "red",
                                  "texts": {"en": {"titel": "x"}}})
    problems = "\n".join(bad.value.problems)
    for field in ("challenge.difficulty", "challenge.max_difficulty", "challenge.expires_after",
                  "challenge.bind_user_agent", "challenge.cookie_name", "challenge.colour",
                  "challenge.texts.en.titel"):
        assert field in problems
    with pytest.raises(PolicyError, match="at least difficulty"):
        default_policy(challenge={"difficulty": 20, "max_difficulty": 16})


def test_difficulty_rises_with_the_score_and_texts_follow_the_language():
    settings = ChallengeSettings(difficulty=14, max_difficulty=18, points_per_extra_bit=10)
    assert settings.difficulty_for(0, 50) == 14
    assert settings.difficulty_for(69, 50) == 15
    assert settings.difficulty_for(100, 0) == 18
    assert settings.nojs_allowed(20) and not settings.nojs_allowed(21)
    assert settings.texts_for("de-DE,de;q=0.9,en;q=0.8") == ("de", settings.texts_for("de")[1])
    assert settings.texts_for("xx")[0] == "en"


# ---- challenges and clearances ------------------------------------------------------------------

def test_solution_checks_take_time_as_an_argument():
    settings, ring = ChallengeSettings(difficulty=8), keyring("k1")
    binding = client_binding(chrome_facts(), settings)
    token, claims = issue_challenge(ring, binding, "/product/1", 8, False, settings, NOW)
    counter = solve(token, 8)
    accepted = verify_solution(ring, token, counter, "/product/1", binding, settings, NOW + 299.9)
    assert accepted["n"] == claims["n"]
    cases = [
        (dict(now=NOW + 300), "challenge.expired"),
        (dict(counter=wrong_solution(token, 8)), "challenge.wrong_solution"),
        (dict(counter="12a"), "challenge.wrong_solution"),
        (dict(url="/product/2"), "challenge.url_mismatch"),
        (dict(binding=client_binding(chrome_facts(ip="203.0.113.9"), settings)), "challenge.ip_mismatch"),
        (dict(binding=client_binding(chrome_facts(**{"user-agent": "Other/1.0"}), settings)),
         "challenge.ua_mismatch"),
    ]
    for change, code in cases:
        args = {"counter": counter, "url": "/product/1", "binding": binding, "now": NOW, **change}
        with pytest.raises(Rejected) as refused:
            verify_solution(ring, token, args["counter"], args["url"], args["binding"], settings, args["now"])
        assert refused.value.code == code


def test_a_valid_clearance_satisfies_challenges_but_never_a_block():
    rules = [{"name": "block-one", "when": {"path": "/product/1"}, "action": "block"}, PRODUCT_RULE]
    engine = Engine(default_policy(rules=rules))
    install_challenges(build_demo_app(engine=engine), keyring=keyring("k1"))
    settings = engine.policy.section("challenge")
    binding = client_binding(chrome_facts(), settings)
    cookie, _ = issue_clearance(keyring("k1"), binding, settings, NOW, mode="pow")

    async def verdict(path: str, with_cookie: bool) -> Verdict:
        decision = await engine.decide(chrome_facts(path, cookie=cookie if with_cookie else None))
        return decision.verdict

    assert asyncio.run(verdict("/product/2", False)) is Verdict.CHALLENGE
    assert asyncio.run(verdict("/product/2", True)) is Verdict.ALLOW
    assert asyncio.run(verdict("/product/1", True)) is Verdict.BLOCK


def challenge_cookies(base_url: str, *forwarding: tuple[str, str]) -> tuple[str, str]:
    """The probe and clearance cookies a solved challenge sets for a browser at `base_url`, the
    request carrying these forwarding headers (a load balancer's, loopback being trusted)."""
    app = build_demo_app(policy=default_policy(rules=[PRODUCT_RULE], challenge={"difficulty": 8},
                                               trusted_proxies=["127.0.0.0/8"]))
    install_challenges(app, keyring=keyring("k1"))

    async def run() -> tuple[str, str]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        headers = [*CHROME_NAVIGATION, ("x-forwarded-for", "198.51.100.8"), *forwarding]
        async with httpx.AsyncClient(transport=transport, base_url=base_url, headers=headers) as client:
            page = await client.get("/product/3")
            config = page_config(page.text)
            # Sent by hand: the browser is on https, but httpx's jar, seeing http, would keep a
            # Secure cookie back.
            probe = page.headers["set-cookie"]
            answer = await client.post("/.shieldware/challenge/verify", headers={"cookie": probe.split(";")[0]}, json={
                "challenge": config["token"], "counter": solve(config["token"], config["difficulty"]),
                "url": config["url"], "telemetry": {"webdriver": False}})
            return probe, answer.headers.get_list("set-cookie")[0]

    return asyncio.run(run())


@pytest.mark.parametrize("base_url, forwarding", [
    ("https://shop.example", ()),
    # TLS ended at a load balancer, which says so; the shop is reached over http
    ("http://shop.example", (("x-forwarded-proto", "https"),)),
    ("http://shop.example", (("forwarded", "for=198.51.100.8;proto=https"),)),
])
def test_https_cookies_are_secure(base_url, forwarding):
    probe, clearance = challenge_cookies(base_url, *forwarding)
    assert probe.endswith("Secure") and "Path=/.shieldware/challenge" in probe
    assert clearance.startswith("shield_clearance=") and "Secure" in clearance and "HttpOnly" in clearance


def test_plain_http_cookies_are_not_secure():
    """A browser on plain http would not store a Secure cookie, and would be challenged for ever."""
    probe, clearance = challenge_cookies("http://shop.example", ("x-forwarded-proto", "http"))
    assert "Secure" not in probe
    assert clearance.startswith("shield_clearance=") and "Secure" not in clearance


def test_challenge_pages_keep_their_language_and_each_its_own_nonce_and_token():
    # The page is filled in from parts kept per language: pages in two languages, asked for in
    # turn, must not bleed into each other, and what is each request's own must stay its own.
    app = build_demo_app(policy=default_policy(rules=[PRODUCT_RULE], challenge={"difficulty": 8}))
    install_challenges(app, keyring=keyring("k1"))

    async def pages() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.example",
                                     headers=CHROME_NAVIGATION) as client:
            return [await client.get(f"/product/{n}", headers={"accept-language": lang})
                    for n, lang in enumerate(("de-DE,de;q=0.9", "en-GB,en;q=0.9", "de", "fr-FR,en;q=0.5"), 1)]

    answers = asyncio.run(pages())
    assert [a.status_code for a in answers] == [403] * 4
    langs = [re.search(r'<html lang="(\w+)">', a.text).group(1) for a in answers]
    assert langs == ["de", "en", "de", "en"]
    assert "Ihr Browser wird geprüft" in answers[0].text and "Ihr Browser wird geprüft" not in answers[1].text
    nonces = []
    for answer in answers:
        nonce = re.search(r"script-src 'nonce-([^']+)'", answer.headers["content-security-policy"]).group(1)
        assert answer.text.count(f'nonce="{nonce}"') == 2  # the style and the script
        assert answer.headers["x-shield-ref"] in answer.text
        nonces.append(nonce)
    assert len(set(nonces)) == 4
    configs = [page_config(a.text) for a in answers]
    assert len({c["token"] for c in configs}) == 4
    assert [c["url"] for c in configs] == [f"/product/{n}" for n in range(1, 5)]


def test_return_urls_and_telemetry_are_sanitised():
    assert safe_return_url("/product/1?x=1", "/.shieldware") == "/product/1?x=1"
    for evil in ("", "product", "//evil.example", "/\\evil", "http://evil.example/", "/a\nb",
                 "/" + "a" * 3000, "/.shieldware/challenge/verify", "/.shieldware"):
        assert safe_return_url(evil, "/.shieldware") == "/"
    cleaned = clean_telemetry({"webdriver": True, "screen": [1, 2, 3], "nested": {"a": 1}, "long": "x" * 500,
                               7: "bad key", "languages": 2})
    assert cleaned == {"webdriver": True, "screen": [1, 2, 3], "long": "x" * 120, "languages": 2}
    assert clean_telemetry("not a dict") == {}


def test_binding_hashes_are_short_and_prefix_based():
    settings = ChallengeSettings()
    near = client_binding(chrome_facts(ip="198.51.100.7"), settings)
    same_net = client_binding(chrome_facts(ip="198.51.100.200"), settings)
    far = client_binding(chrome_facts(ip="198.51.101.7"), settings)
    assert near == same_net and near.ip != far.ip
    v6 = client_binding(chrome_facts(ip="2001:db8:1:2::1"), settings)
    assert v6.ip == client_binding(chrome_facts(ip="2001:db8:1:ffff::9"), settings).ip
    assert len(near.ip) == 12 and near.ip != hashlib.sha256(b"198.51.100.0/24").hexdigest()[:12]
