"""Refusal pages: templates split once fill in exactly as string.Template would, only cheaper."""

from __future__ import annotations

import json
from importlib import resources
from string import Template

import pytest

from shieldware.actions.page_template import PageTemplate, template
from shieldware.actions.pages import decision_response, wants_json
from shieldware.decision import Decision, Verdict

PAGES = ("block.html", "challenge.html", "challenge_notice.html")


def shipped(name: str) -> str:
    return resources.files("shieldware.web").joinpath(name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", PAGES)
def test_a_shipped_page_fills_in_as_string_template_does(name):
    text = shipped(name)
    page = template(name)
    values = {hole: f"<{hole}> é €" for hole in page.holes}  # non-ASCII: the parts are UTF-8 bytes
    assert page.holes and page.holes == {m.group("named") or m.group("braced")
                                         for m in Template.pattern.finditer(text)}
    assert page.fill(**values) == Template(text).substitute(values).encode()


@pytest.mark.parametrize("name", PAGES)
def test_holes_bound_once_and_the_rest_filled_later_make_the_same_page(name):
    page = template(name)
    values = {hole: f"value of {hole}" for hole in page.holes}
    fixed, later = sorted(page.holes)[::2], sorted(page.holes)[1::2]
    bound = page.bind(**{h: values[h] for h in fixed})
    assert bound.holes == set(later)
    assert bound.fill(**{h: values[h] for h in later}) == page.fill(**values)


def test_dollars_braces_and_repeated_holes():
    page = PageTemplate.parse("price $$5 for ${who}s; $who again")
    assert page.holes == {"who"}
    assert page.fill(who="you") == b"price $5 for yous; you again"


def test_a_lone_dollar_is_refused_with_its_line():
    with pytest.raises(ValueError, match="line 2"):
        PageTemplate.parse("fine\ncosts $ 5")


def test_a_hole_left_empty_or_a_name_the_page_lacks_is_an_error():
    page = PageTemplate.parse("<p>$ref</p>")
    with pytest.raises(KeyError, match="ref"):
        page.fill()
    with pytest.raises(KeyError, match="nonce"):
        page.bind(nonce="x")


def _decision(verdict: Verdict) -> Decision:
    return Decision(ref="abc123-0000001", verdict=verdict, bot_score=91.0, reasons=(), route_group="pages",
                    time=1.0, client_ip="203.0.113.7", method="GET", path="/", mode="enforce", retry_after=2.5)


@pytest.mark.parametrize("verdict", [Verdict.BLOCK, Verdict.THROTTLE, Verdict.UNAVAILABLE])
def test_refusal_pages_carry_their_reference_and_say_what_happened(verdict):
    status, headers, body = decision_response(_decision(verdict), as_json=False)
    page = body.decode()
    assert "abc123-0000001" in page and "$" not in page
    assert dict(headers)[b"content-length"] == str(len(body)).encode()
    assert status == {Verdict.BLOCK: 403, Verdict.THROTTLE: 429, Verdict.UNAVAILABLE: 503}[verdict]
    other = decision_response(_decision(Verdict.BLOCK if verdict is not Verdict.BLOCK else Verdict.THROTTLE),
                              as_json=False)[2]
    assert other != body  # each verdict its own title and message, not one page cached for all


def test_scripts_get_the_refusal_as_json():
    status, headers, body = decision_response(_decision(Verdict.THROTTLE), as_json=True)
    assert status == 429 and dict(headers)[b"content-type"] == b"application/json"
    assert json.loads(body) == {"error": "throttle", "message": json.loads(body)["message"], "ref": "abc123-0000001",
                                "reasons": [], "retry_after": 3}


@pytest.mark.parametrize(("headers", "expected"), [
    ({"accept": "application/json"}, True),
    ({"accept": "text/html,application/json"}, False),
    ({"accept": "*/*", "sec-fetch-mode": "cors"}, True),
    ({"accept": "text/html", "sec-fetch-mode": "cors"}, False),
    ({"x-requested-with": "XMLHttpRequest"}, True),
    ({"accept": "*/*"}, False),
])
def test_who_gets_json(headers, expected):
    assert wants_json(headers) is expected
