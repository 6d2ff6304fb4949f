"""The shop's statuses come back through each real edge's log: nginx, Traefik and Caddy run the
README's snippets (which log the status beside the check's reference), `shieldware proxy
--auth-only --outcome-log` reads that log, and a browser that asks the shop for page after page it
does not have is seen probing on its next check, as it would be behind `shieldware proxy`; and the
accounts the shop names in `X-Shield-Event` show one address trying many, though the check never
sees a login form.

Each edge gets a shieldware of its own: the probing evidence is about 127.0.0.1, every test
client's address, and must not reach another edge's tests.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
import yaml

from tests.proxy.test_forward_auth_edges import (
    MISSING,
    OUTCOME_LOGS,
    STARTERS,
    decision_of,
    ordered_get,
    ordered_request,
    running_edge,
)
from tests.proxy_support import proxy_process, roomy_policy
from tests.support import CHROME_NAVIGATION

PROBES = 12  # the shipped policy sees probing from 8 error answers making 30 % of the recent requests


@pytest.fixture(params=list(STARTERS))
def fed_edge(request, shop, tmp_path):
    name = request.param
    if MISSING[name]:
        pytest.skip(MISSING[name])
    policy_path = roomy_policy(tmp_path / "policy.yaml")
    policy = yaml.safe_load(policy_path.read_text())
    policy["decision_log"] = {"all": True}  # allowed decisions too: their reasons are what is checked
    policy_path.write_text(yaml.safe_dump(policy))
    outcomes = tmp_path / OUTCOME_LOGS[name]  # not there yet: the edge creates it
    decisions = tmp_path / "decisions.jsonl"
    with proxy_process("--auth-only", "--monitor", "--policy", str(policy_path), "--decision-log", str(decisions),
                       "--outcome-log", str(outcomes)) as shield:
        shield.decisions = decisions
        with running_edge(name, tmp_path, shield.port, shop.port) as edge:
            yield edge, shield, outcomes


def fed_lines(shield) -> int:
    metrics = requests.get(shield.url + "/.shieldware/metrics", timeout=5).text
    found = re.search(r'^shieldware_outcome_lines_total\{result="fed"\} ([0-9.]+)$', metrics, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def reasons_of_a_page(edge, shield) -> list[str]:
    page = ordered_get(edge, "/echo-headers", CHROME_NAVIGATION)
    assert page.status == 200  # monitor mode: let through whatever the verdict
    ref = dict((name, value) for name, value in json.loads(page.body)["headers"])["x-shield-ref"]
    return [reason["code"] for reason in decision_of(shield, ref)["reasons"]]


def test_404s_answered_behind_the_edge_become_probing_evidence_on_the_next_check(fed_edge, shop):
    edge, shield, outcomes = fed_edge
    assert "behav.probing" not in reasons_of_a_page(edge, shield)
    for n in range(PROBES):
        assert ordered_get(edge, f"/status/404?n={n}", CHROME_NAVIGATION).status == 404
    deadline = time.monotonic() + 10
    while fed_lines(shield) < PROBES + 1:  # the first page's 200 too
        if time.monotonic() > deadline:
            logged = outcomes.read_text(errors="replace")[-3000:] if outcomes.exists() else "(no file)"
            raise AssertionError(f"{edge.name}: {fed_lines(shield)} statuses fed back; its log: {logged}")
        time.sleep(0.1)
    assert "behav.probing" in reasons_of_a_page(edge, shield)


ACCOUNTS = 8  # the shipped policy sees a spray from 5 accounts tried from one address in a visit
LOGIN_FORM = [*CHROME_NAVIGATION, ("content-type", "application/x-www-form-urlencoded")]


def attempt_login(edge, n: int):
    form = f"username=user{n}%40example.org&password=x".encode()
    return ordered_request(edge, "POST", "/login", LOGIN_FORM, body=form)


def test_the_accounts_the_shop_names_behind_the_edge_show_one_address_trying_many(fed_edge, shop):
    """The check never sees the login form; the shop's X-Shield-Event, logged by the edge, names
    the account, and the attempt after several failures is seen as credential stuffing."""
    edge, shield, outcomes = fed_edge
    for n in range(ACCOUNTS):
        answer = attempt_login(edge, n)
        assert answer.status == 200 and answer.body.startswith(b"wrong password")
        # nginx keeps the shop's word for shieldware; Traefik and Caddy cannot log it and hide it
        assert (answer.getheader("x-shield-event") is None) == (edge.name == "nginx")
    deadline = time.monotonic() + 10
    while fed_lines(shield) < ACCOUNTS:
        if time.monotonic() > deadline:
            logged = outcomes.read_text(errors="replace")[-3000:] if outcomes.exists() else "(no file)"
            raise AssertionError(f"{edge.name}: {fed_lines(shield)} outcomes fed back; its log: {logged}")
        time.sleep(0.1)
    ref = attempt_login(edge, ACCOUNTS).body.decode().rsplit("ref ", 1)[1]
    assert "ato.username_spray" in [reason["code"] for reason in decision_of(shield, ref)["reasons"]]
