"""The response watch: what the middleware keeps of a response, and the C watch against the Python one."""

from __future__ import annotations

import asyncio
from collections import UserDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldware import response_watch
from shieldware.response_watch import PyResponseWatch

WATCHES = [PyResponseWatch]
if response_watch.ResponseWatch is not PyResponseWatch:
    WATCHES.append(response_watch.ResponseWatch)


class Recorder:
    """An ASGI send that keeps copies of what it was given and hands back an awaitable."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def __call__(self, message):
        self.sent.append({**message, "headers": list(message["headers"])} if "headers" in message else dict(message))
        return asyncio.sleep(0)


def _start(status, headers):
    return {"type": "http.response.start", "status": status, "headers": headers}


@pytest.mark.parametrize("watch_type", WATCHES, ids=lambda t: t.__module__)
def test_a_plain_response_passes_untouched_and_its_status_is_kept(watch_type):
    send = Recorder()
    watch = watch_type(send, None)
    headers = [(b"content-type", b"text/html"), (b"x-shield-eventually", b"no")]
    awaitable = watch(_start(404, headers))
    asyncio.run(_await(awaitable))
    watch({"type": "http.response.body", "body": b"gone", "more_body": False}).close()
    assert send.sent == [_start(404, headers), {"type": "http.response.body", "body": b"gone", "more_body": False}]
    assert (watch.status, watch.events, watch.outcomes) == (404, None, None)


async def _await(awaitable):
    await awaitable


@pytest.mark.parametrize("watch_type", WATCHES, ids=lambda t: t.__module__)
def test_the_apps_events_are_taken_out_and_parsed(watch_type):
    send = Recorder()
    watch = watch_type(send, frozenset({"x-login-result"}))
    watch(_start(200, [(b"X-Shield-Event", b"login_failed; account=alice"), (b"X-Login-Result", b"Bad"),
                       (b"content-length", b"0")])).close()
    assert send.sent[0]["headers"] == [(b"X-Login-Result", b"Bad"), (b"content-length", b"0")]
    assert watch.status == 200
    assert watch.events == [("login_failed", {"account": "alice"})]
    assert watch.outcomes == {"x-login-result": "Bad"}


@pytest.mark.parametrize("watch_type", WATCHES, ids=lambda t: t.__module__)
def test_odd_messages_are_still_watched(watch_type):
    send = Recorder()
    watch = watch_type(send, None)
    # a mapping that is not a dict, and headers given as a generator-free tuple of lists
    message = UserDict(_start(201, ((b"x-shield-event", b"signup"),)))
    watch(message).close()
    assert watch.status == 201 and watch.events == [("signup", {})]
    with pytest.raises(KeyError):
        watch_type(Recorder(), None)({"type": "http.response.start", "headers": []})


NAMES = st.sampled_from([b"x-shield-event", b"X-Shield-Event", b"X-SHIELD-EVENT", b"x-shield-evenT",
                         b"x-shield-even", b"x-shield-events", b"content-type", b"set-cookie", b"x-result",
                         b"X-Result", b"y-shield-event"])
VALUES = st.sampled_from([b"login_failed; account=bob", b"signup", b"BAD NAME", b"", b"ok", b"card_declined;x=1"])


@pytest.mark.skipif(len(WATCHES) == 1, reason="the fast lane's C extension is not compiled here")
@settings(max_examples=1500)
@given(st.lists(st.tuples(st.sampled_from(["http.response.start", "http.response.body", "websocket.send"]),
                          st.one_of(st.sampled_from([200, 401, 404]), st.integers(100, 599)),
                          st.lists(st.tuples(NAMES, VALUES), max_size=6),
                          st.booleans()), min_size=1, max_size=3),
       st.sampled_from([None, frozenset(), frozenset({"x-result"}), frozenset({"x-result", "set-cookie"})]),
       st.sampled_from([None, frozenset(), frozenset({404}), frozenset({200, 401, 404})]))
def test_the_compiled_watch_watches_as_the_python_one(messages, watched, hear_on):
    python_send, compiled_send = Recorder(), Recorder()
    python_hear, compiled_hear = Hearing(), Hearing()
    python_watch = PyResponseWatch(python_send, watched, python_hear, hear_on)
    compiled_watch = response_watch.ResponseWatch(compiled_send, watched, compiled_hear, hear_on)
    for kind, status, headers, as_tuple in messages:
        for watch in (python_watch, compiled_watch):
            message = {"type": kind, "status": status, "headers": tuple(headers) if as_tuple else list(headers)}
            watch(message).close()
    assert compiled_send.sent == python_send.sent
    assert [start for _, start in compiled_hear.heard] == [start for _, start in python_hear.heard]
    assert compiled_watch.status == python_watch.status
    assert compiled_watch.events == python_watch.events
    assert compiled_watch.outcomes == python_watch.outcomes


@pytest.mark.parametrize("watch_type", WATCHES, ids=lambda t: t.__module__)
def test_watches_are_built_from_positions_or_names_alike(watch_type):
    send = Recorder()
    for watch in (watch_type(send, frozenset({"location"})), watch_type(send, watched=frozenset({"location"})),
                  watch_type(send=send, watched=frozenset({"location"}))):
        assert watch.send is send and watch.watched == frozenset({"location"}) and watch.status is None
    assert watch_type(send, frozenset()).watched is None  # nothing to watch is no watch list
    for wrong in ((send,), (send, None, None, None, None, None), (send, None, None, [404])):
        with pytest.raises(TypeError):
            watch_type(*wrong)
    with pytest.raises(TypeError):
        watch_type(send, None, sent=send)
    hear = Hearing()
    for watch in (watch_type(send, None, hear, frozenset({404}), "decision"),
                  watch_type(send, None, hear=hear, hear_on=frozenset({404}), decision="decision")):
        assert (watch.hear, watch.hear_on, watch.decision) == (hear, frozenset({404}), "decision")
    assert (watch_type(send, None).hear, watch_type(send, None).hear_on, watch_type(send, None).decision) == (None,) * 3


class Hearing:
    """A `hear` that keeps what it was handed and sends the start itself, as the middleware's does."""

    def __init__(self) -> None:
        self.heard: list[tuple[object, dict]] = []

    def __call__(self, watch, start):
        self.heard.append((watch, start))
        return watch.send(start)


@pytest.mark.parametrize("watch_type", WATCHES, ids=lambda t: t.__module__)
def test_a_start_with_a_status_to_hear_goes_to_hear_once(watch_type):
    send, hear = Recorder(), Hearing()
    watch = watch_type(send, None, hear, frozenset({404, 401}), "the decision")
    start = _start(404, [(b"content-type", b"text/plain")])
    watch(start).close()
    assert hear.heard == [(watch, start)] and watch.status == 404 and watch.hear is None
    assert send.sent == [start]  # sent once, by hear
    watch({"type": "http.response.body", "body": b"gone"}).close()
    watch(_start(401, [])).close()  # not a response the server lets through; heard only once all the same
    assert len(hear.heard) == 1 and len(send.sent) == 3


@pytest.mark.parametrize("watch_type", WATCHES, ids=lambda t: t.__module__)
def test_a_start_with_another_status_goes_to_send(watch_type):
    send, hear = Recorder(), Hearing()
    for watch in (watch_type(send, None, hear, frozenset({404}), None), watch_type(send, None, hear, None, None),
                  watch_type(send, None, None, frozenset({200}), None)):
        watch(_start(200, [])).close()
    assert hear.heard == [] and len(send.sent) == 3


@pytest.mark.parametrize("watch_type", WATCHES, ids=lambda t: t.__module__)
def test_a_start_with_events_is_heard_whatever_its_status(watch_type):
    send, hear = Recorder(), Hearing()
    watch = watch_type(send, None, hear, frozenset(), None)
    watch(_start(200, [(b"X-Shield-Event", b"signup")])).close()
    assert len(hear.heard) == 1 and watch.events == [("signup", {})]
    assert send.sent[0]["headers"] == []  # the event header is taken out before hear sends the start
