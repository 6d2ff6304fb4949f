"""The demo shop on real uvicorn behind a trusted proxy: a browser from AWS scores above one from home.

uvicorn's own X-Forwarded-For handling is switched off (proxy_headers=False) so that shieldware's
`trusted_proxies` alone decides whose forwarding header counts.
"""

from __future__ import annotations

import json

import httpx
import pytest

from shieldware.decision_log import read_records
from shieldware.demo import build_demo_app
from shieldware.policy import default_policy
from tests.support import CHROME_NAVIGATION, live_server

AWS = "3.5.140.1"  # AWS eu/ap range in the shipped database
HOME = "73.15.20.1"  # a Comcast broadband line


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "decisions.jsonl"
    policy = default_policy(
        trusted_proxies=["127.0.0.1/32"],
        decision_log={"path": str(log), "all": True},
        rules=[{"name": "checkout-from-datacenters", "when": {"group": "checkout", "net.kind": "hosting"},
                "action": "challenge"}],
    )
    with live_server(build_demo_app(policy=policy), proxy_headers=False) as server:
        server.decision_log = log
        yield server


def _visit(shop, path: str, forwarded_for: str, logged_as: str | None = None) -> tuple[httpx.Response, dict]:
    headers = [*CHROME_NAVIGATION, ("x-forwarded-for", forwarded_for)]
    with httpx.Client(headers=headers) as client:
        response = client.get(f"{shop.url}{path}")
    logged_as = logged_as or forwarded_for
    records = [r for r in read_records(shop.decision_log)
               if r.get("client_ip") == logged_as and r["path"] == path]
    assert records, f"no decision logged for {logged_as} {path}"
    return response, records[-1]


def test_browser_from_aws_scores_higher_than_from_home_with_reason_net_hosting(shop):
    home_response, home = _visit(shop, "/product/7", HOME)
    cloud_response, cloud = _visit(shop, "/product/7", AWS)
    assert home_response.status_code == cloud_response.status_code == 200  # hosting alone blocks nobody
    assert cloud["score"] > home["score"]
    codes = [r["code"] for r in cloud["reasons"]]
    assert "net.hosting" in codes and "net.hosting" not in [r["code"] for r in home["reasons"]]
    hosting = next(r for r in cloud["reasons"] if r["code"] == "net.hosting")
    assert hosting["detail"]["provider"] == "aws"


def test_policy_challenges_a_datacenter_browser_on_checkout_only(shop):
    home_response, home = _visit(shop, "/checkout", HOME)
    cloud_response, cloud = _visit(shop, "/checkout", AWS)
    assert home_response.status_code == 200 and home["verdict"] == "allow"
    assert cloud["verdict"] == "challenge" and cloud["rule"] == "checkout-from-datacenters"
    assert cloud_response.status_code == 403
    assert cloud_response.headers["x-shield-ref"] == cloud["ref"]


def test_ipv4_mapped_forwarded_address_is_the_same_client(shop):
    response, record = _visit(shop, "/product/8", f"::ffff:{AWS}", logged_as=AWS)
    assert response.status_code == 200
    assert "net.hosting" in [r["code"] for r in record["reasons"]]


def test_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path):
    log = tmp_path / "decisions.jsonl"
    policy = default_policy(decision_log={"path": str(log), "all": True})  # no trusted proxies
    with live_server(build_demo_app(policy=policy), proxy_headers=False) as server:
        server.decision_log = log
        response, record = _visit(server, "/product/9", AWS, logged_as="127.0.0.1")
    assert response.status_code == 200
    assert not [r for r in record["reasons"] if r["code"].startswith("net.")]


def test_decision_log_lines_are_json(shop):
    for line in shop.decision_log.read_text(encoding="utf-8").splitlines():
        json.loads(line)
