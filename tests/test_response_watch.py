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
                          st.integers(100, 599), st.lists(st.tuples(NAMES, VALUES), max_size=6),
                          st.booleans()), min_size=1, max_size=3),
       st.sampled_from([None, frozenset(), frozenset({"x-result"}), frozenset({"x-result", "set-cookie"})]))
def test_the_compiled_watch_watches_as_the_python_one(messages, watched):
    python_send, compiled_send = Recorder(), Recorder()
    python_watch = PyResponseWatch(python_send, watched)
    compiled_watch = response_watch.ResponseWatch(compiled_send, watched)
    for kind, status, headers, as_tuple in messages:
        for watch in (python_watch, compiled_watch):
            message = {"type": kind, "status": status, "headers": tuple(headers) if as_tuple else list(headers)}
            watch(message).close()
    assert compiled_send.sent == python_send.sent
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
    for wrong in ((send,), (send, None, None)):
        with pytest.raises(TypeError):
            watch_type(*wrong)
    with pytest.raises(TypeError):
        watch_type(send, None, sent=send)
