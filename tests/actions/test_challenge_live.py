"""Challenges on a real uvicorn server: solutions and clearances accepted once, refused with a reason each."""

from __future__ import annotations

import httpx
import pytest

from shieldware.actions.challenge import install_challenges
from shieldware.demo import build_demo_app
from shieldware.metrics import Metrics
from tests.challenge_support import challenge_policy, keyring, page_config, solve, wrong_solution
from tests.support import CHROME_NAVIGATION, SimulatedClock, live_server

FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
VERIFY = "/.shieldware/challenge/verify"


def start_shop(clock: SimulatedClock, keys=None, **challenge):
    app = build_demo_app(policy=challenge_policy(**challenge), clock=clock)
    app.engine.metrics = Metrics()  # a registry of its own, so counts belong to this server
    install_challenges(app, keyring=keys or keyring("k1"))
    return app


@pytest.fixture(scope="module")
def clock():
    return SimulatedClock()


@pytest.fixture(scope="module")
def shop(clock):
    app = start_shop(clock)
    with live_server(app) as server:
        server.app = app
        yield server


def client_for(server, ip: str, **replace: str) -> httpx.Client:
    headers = [(k, replace.pop(k, v)) for k, v in CHROME_NAVIGATION]
    headers += [("x-forwarded-for", ip), *replace.items()]
    return httpx.Client(base_url=server.url, headers=headers, timeout=10)


def fetch_challenge(client: httpx.Client, path: str) -> dict:
    response = client.get(path)
    assert response.status_code == 403
    assert response.headers["x-shield-verdict"] == "challenge"
    assert "Add to cart" not in response.text
    return page_config(response.text)


def post_solution(client: httpx.Client, config: dict, counter: str | None = None, url: str | None = None,
                  telemetry: dict | None = None) -> httpx.Response:
    counter = counter or solve(config["token"], config["difficulty"])
    payload = {"challenge": config["token"], "counter": counter, "url": config["url"] if url is None else url,
               "solve_ms": 12, "telemetry": telemetry or {}}
    return client.post(VERIFY, json=payload, headers={"accept": "application/json"})


def pass_challenge(client: httpx.Client, path: str) -> str:
    answer = post_solution(client, fetch_challenge(client, path))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ok": True, "redirect": path}
    return client.cookies["shield_clearance"]


def refusal_reasons(server, ip: str, cookie: str, **replace: str) -> list[str]:
    """The reasons shieldware gives for challenging a request that carries this clearance."""
    with client_for(server, ip, accept="application/json", **replace) as other:
        other.cookies.set("shield_clearance", cookie)
        response = other.get("/product/9")
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "challenge"
    return body["reasons"]


def test_solved_challenge_returns_to_the_url_and_clears_twenty_pages(shop):
    with client_for(shop, "198.51.100.10") as client:
        first = client.get("/product/5?colour=red")
        config = page_config(first.text)
        assert config["url"] == "/product/5?colour=red"
        answer = post_solution(client, config)
        assert answer.json()["redirect"] == "/product/5?colour=red"
        cookies = answer.headers.get_list("set-cookie")
        set_cookie = next(v for v in cookies if v.startswith("shield_clearance="))
        assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Secure" not in set_cookie
        assert "Max-Age=3600" in set_cookie
        landed = client.get("/product/5?colour=red")
        assert landed.status_code == 200 and "Add to cart" in landed.text
        for product in range(6, 26):
            page = client.get(f"/product/{product}")
            assert page.status_code == 200, page.text[:300]
            assert "Add to cart" in page.text


def test_wrong_solution_is_refused(shop):
    with client_for(shop, "198.51.100.11") as client:
        config = fetch_challenge(client, "/product/1")
        answer = post_solution(client, config, counter=wrong_solution(config["token"], config["difficulty"]))
        assert answer.status_code == 403
        assert answer.json()["reason"] == "challenge.wrong_solution"
        assert "shield_clearance" not in client.cookies
        # The refusal did not burn the challenge: the right answer is still accepted.
        assert post_solution(client, config).status_code == 200


def test_replayed_solution_is_refused(shop):
    with client_for(shop, "198.51.100.12") as client:
        config = fetch_challenge(client, "/product/2")
        assert post_solution(client, config).status_code == 200
        replay = post_solution(client, config)
        assert replay.status_code == 403
        assert replay.json()["reason"] == "challenge.replayed"


def test_solution_for_another_url_is_refused(shop):
    with client_for(shop, "198.51.100.13") as client:
        config = fetch_challenge(client, "/product/3")
        answer = post_solution(client, config, url="/checkout")
        assert answer.status_code == 403
        assert answer.json()["reason"] == "challenge.url_mismatch"


def test_solution_after_expiry_is_refused(shop, clock):
    with client_for(shop, "198.51.100.14") as client:
        config = fetch_challenge(client, "/product/4")
        counter = solve(config["token"], config["difficulty"])
        clock.advance(301)  # the default challenge lives 300 s
        answer = post_solution(client, config, counter=counter)
        assert answer.status_code == 403
        assert answer.json()["reason"] == "challenge.expired"


def test_solution_from_another_network_is_refused(shop):
    with client_for(shop, "198.51.100.15") as client:
        config = fetch_challenge(client, "/product/4")
    with client_for(shop, "203.0.113.15") as elsewhere:
        elsewhere.cookies.set("shield_clearance_probe", "1")
        answer = post_solution(elsewhere, config)
    assert answer.json()["reason"] == "challenge.ip_mismatch"


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"challenge": 1, "counter": "1", "url": "/"}',
                                  b'{"challenge": "a.b.c", "counter": "1", "url": "/"}', b"x" * 70_000])
def test_malformed_solutions_get_a_clear_refusal(shop, body):
    with client_for(shop, "198.51.100.16") as client:
        answer = client.post(VERIFY, content=body, headers={"content-type": "application/json"})
    assert answer.status_code in (400, 403)
    expected = ("challenge.bad_request", "challenge.unknown_key", "challenge.malformed")
    assert answer.json()["reason"] in expected


def test_forged_cookie_is_refused(shop):
    with client_for(shop, "198.51.100.20") as client:
        cookie = pass_challenge(client, "/product/1")
    kid, claims, signature = cookie.split(".")
    tampered = f"{kid}.{claims[:-2]}{'A' if claims[-2] != 'A' else 'B'}{claims[-1]}.{signature}"
    assert "clearance.forged" in refusal_reasons(shop, "198.51.100.20", tampered)
    invented = "k1.eyJpZCI6ICJ4In0.c2lnbmF0dXJl"
    assert "clearance.forged" in refusal_reasons(shop, "198.51.100.20", invented)
    assert "clearance.malformed" in refusal_reasons(shop, "198.51.100.20", "not-a-token")


def test_expired_cookie_is_refused(shop, clock):
    with client_for(shop, "198.51.100.21") as client:
        cookie = pass_challenge(client, "/product/1")
        assert client.get("/product/2").status_code == 200
        clock.advance(3601)
    assert "clearance.expired" in refusal_reasons(shop, "198.51.100.21", cookie)


def test_cookie_moved_to_another_network_or_browser_is_refused(shop):
    with client_for(shop, "198.51.100.22") as client:
        cookie = pass_challenge(client, "/product/1")
    # Same /24 (a home router reconnecting): still valid.
    with client_for(shop, "198.51.100.23") as neighbour:
        neighbour.cookies.set("shield_clearance", cookie)
        assert neighbour.get("/product/3").status_code == 200
    assert "clearance.ip_mismatch" in refusal_reasons(shop, "192.0.2.22", cookie)
    other_browser = {"user-agent": FIREFOX_UA}
    assert "clearance.ua_mismatch" in refusal_reasons(shop, "198.51.100.22", cookie, **other_browser)


def test_clearance_shared_across_many_addresses_is_caught(shop):
    with client_for(shop, "198.51.100.30") as client:
        cookie = pass_challenge(client, "/product/1")
    for host in range(31, 35):  # four more addresses in the same /24: each would pass the binding
        with client_for(shop, f"198.51.100.{host}") as other:
            other.cookies.set("shield_clearance", cookie)
            other.get("/product/2")
    reasons = refusal_reasons(shop, "198.51.100.35", cookie)
    assert "clearance.reuse" in reasons and "clearance.valid" not in reasons


def test_json_and_fetch_clients_get_a_machine_readable_challenge(shop):
    fetch_headers = {"sec-fetch-mode": "cors", "sec-fetch-dest": "empty", "referer": f"{shop.url}/product/8"}
    with client_for(shop, "198.51.100.40", accept="*/*", **fetch_headers) as client:
        response = client.get("/product/8")
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/json"
        challenge = response.json()["challenge"]
        assert challenge["type"] == "proof_of_work"
        assert challenge["page"] == "/.shieldware/challenge?return=/product/8"
    with client_for(shop, "198.51.100.40") as person:
        page = person.get(challenge["page"])
        assert page.status_code == 200
        config = page_config(page.text)
        assert config["url"] == "/product/8"
        assert post_solution(person, config).json()["redirect"] == "/product/8"


def test_return_urls_never_leave_the_shop(shop):
    with client_for(shop, "198.51.100.41") as client:
        for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example",
                     "/.shieldware/challenge"):
            page = client.get("/.shieldware/challenge", params={"return": evil})
            assert page_config(page.text)["url"] == "/"


def test_client_without_cookies_is_told_so(shop):
    with client_for(shop, "198.51.100.42") as client:
        config = fetch_challenge(client, "/product/1")
        client.cookies.clear()  # a client that keeps no cookies never sends the probe back
        answer = post_solution(client, config)
        assert answer.status_code == 403
        assert answer.json()["reason"] == "challenge.cookies_disabled"
        assert client.get("/.shieldware/challenge/check").json() == {"clearance": "none"}


def test_metrics_count_issued_solved_failed_expired_and_solve_time(shop, clock):
    with client_for(shop, "198.51.100.43") as client:
        config = fetch_challenge(client, "/product/1")
        assert post_solution(client, config).status_code == 200
        post_solution(client, config)  # replayed
        with client_for(shop, "198.51.100.43") as without_clearance:
            late = fetch_challenge(without_clearance, "/product/2")
        clock.advance(301)
        post_solution(client, late)  # expired
    text = httpx.get(f"{shop.url}/.shieldware/metrics").text
    assert 'shieldware_challenges_issued_total{kind="page"}' in text
    assert 'shieldware_challenges_solved_total{mode="pow"}' in text
    assert 'shieldware_challenges_failed_total{reason="challenge.replayed"}' in text
    expired = [line for line in text.splitlines() if line.startswith("shieldware_challenges_expired_total")]
    assert float(expired[0].split()[-1]) >= 1
    assert "shieldware_challenge_solve_seconds_count" in text


def test_cookie_signed_with_a_retired_key_is_refused():
    clock = SimulatedClock()
    app = start_shop(clock, keys=keyring("k1"))
    with live_server(app) as server:
        with client_for(server, "198.51.100.50") as client:
            old_cookie = pass_challenge(client, "/product/1")
            assert client.get("/product/2").status_code == 200
        clock.advance(5)  # a few seconds between phases, as a person would take (per-IP rate limits)
        # Rotation: k2 signs now, k1 is still honoured ...
        install_challenges(app, keyring=keyring("k2", "k1"))
        with client_for(server, "198.51.100.50") as client:
            client.cookies.set("shield_clearance", old_cookie)
            assert client.get("/product/3").status_code == 200
            client.cookies.clear()
            new_cookie = pass_challenge(client, "/product/4")
            assert new_cookie.startswith("k2.")
        clock.advance(5)
        # ... until it is retired.
        install_challenges(app, keyring=keyring("k2", retired=("k1",)))
        assert "clearance.retired_key" in refusal_reasons(server, "198.51.100.50", old_cookie)
        with client_for(server, "198.51.100.50") as client:
            client.cookies.set("shield_clearance", new_cookie)
            assert client.get("/product/5").status_code == 200
        clock.advance(5)
        install_challenges(app, keyring=keyring("k3"))
        assert "clearance.unknown_key" in refusal_reasons(server, "198.51.100.50", new_cookie)


def test_fingerprint_binding_when_configured():
    app = start_shop(SimulatedClock(), bind_fingerprint=True)
    with live_server(app) as server:
        with client_for(server, "198.51.100.60") as client:
            cookie = pass_challenge(client, "/product/1")
            assert client.get("/product/2").status_code == 200
        reasons = refusal_reasons(server, "198.51.100.60", cookie, **{"accept-language": "fr-FR,fr;q=0.9"})
        assert "clearance.fingerprint_mismatch" in reasons


def test_higher_scores_get_harder_challenges():
    app = start_shop(SimulatedClock(), difficulty=10)
    with live_server(app) as server:
        with client_for(server, "198.51.100.70") as person:
            assert fetch_challenge(person, "/product/1")["difficulty"] == 10
        # No Accept-Language / Accept-Encoding for a Chrome claim: hdr.browser_missing (55 points).
        with httpx.Client(base_url=server.url, headers={"user-agent": CHROME_NAVIGATION[5][1],
                                                        "x-forwarded-for": "198.51.100.71"}) as odd:
            response = odd.get("/product/1")
            config = page_config(response.text)
        assert config["difficulty"] > 10
        # A score over the no-JS threshold gets no meta-refresh path, only the explanation.
        assert 'http-equiv="refresh"' not in response.text
        assert "needs JavaScript" in response.text
