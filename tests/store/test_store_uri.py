"""A mistyped store URI is a clear error before anything serves: never a traceback in every worker,
and never a silent default (redis-py reads a database it cannot parse as database 0)."""

from __future__ import annotations

import pytest

from shieldware.cli import main
from shieldware.policy import PolicyError, policy_from_text
from shieldware.store import MemoryStore, check_store_uri, open_store, shown_uri

GOOD = {
    "memory://": "memory",
    "memory://?capacity=64": "memory",
    "redis://127.0.0.1:6379/0": "redis",
    "redis://127.0.0.1:6379": "redis",
    "redis://127.0.0.1:6379/2?timeout=0.5&ttl=600&prefix=shop&breaker_failures=5": "redis",
    "rediss://:secret@cache.internal:6380/3": "rediss",
    "unix:///run/redis/redis.sock?db=1": "unix",
    "redis+cluster://10.0.0.1:7000,10.0.0.2:7000": "redis+cluster",
    "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/shop/4": "redis+sentinel",
}

BAD = {
    "bogus://x": "unknown store URI",
    "127.0.0.1:6379": "unknown store URI",
    "memory://?capacity=0": "capacity must be at least 1",
    "redis://cache:notaport/0": "the port must be a number",
    "redis://cache:70000/0": "the port must be a number",
    "redis://cache:6379/zero": "the database must be a number such as 0, got 'zero'",
    "redis://cache:6379?db=x": "the database must be a number",
    "redis://cache:6379/0?ttl=-5": "ttl must be a whole number of at least 1",
    "redis://cache:6379/0?breaker_failures=some": "breaker_failures must be a whole number",
    "redis://cache:6379/0?timeout=soon": "timeout must be a number of seconds",
    "unix://": "expected the socket's path",
    "redis+sentinel://10.0.0.1:26379": "sentinel service name",
    "redis+sentinel://10.0.0.1:26379/shop/x": "the database must be a number",
    "redis+cluster://": "at least one host:port",
}


@pytest.mark.parametrize("uri", sorted(GOOD))
def test_good_uris_pass_without_connecting(uri):
    # Nothing listens at these addresses: the check reads the URI and nothing else.
    assert check_store_uri(uri) == GOOD[uri]


@pytest.mark.parametrize("uri", sorted(BAD))
def test_bad_uris_name_the_uri_and_the_mistake(uri):
    with pytest.raises(ValueError) as caught:
        check_store_uri(uri)
    message = str(caught.value)
    assert repr(uri) in message and BAD[uri] in message
    with pytest.raises(ValueError, match="store URI"):
        open_store(uri)


SHOWN = {
    "memory://?capacity=64": "memory://?capacity=64",
    "redis://127.0.0.1:6379/0?timeout=0.5": "redis://127.0.0.1:6379/0?timeout=0.5",
    "rediss://:s3cret@cache.internal:6380/3": "rediss://:***@cache.internal:6380/3",
    "redis://shop:s3cret@cache:6379/0?prefix=sw": "redis://shop:***@cache:6379/0?prefix=sw",
    "redis://shop@cache:6379/0": "redis://shop@cache:6379/0",  # a user name alone is no secret
    "redis://cache:6379/0?password=s3cret&timeout=1": "redis://cache:6379/0?password=***&timeout=1",
    "redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379/shop?sentinel_password=s3cret":
        "redis+sentinel://:***@10.0.0.1:26379,10.0.0.2:26379/shop?sentinel_password=***",
    "redis+cluster://:p%40ss@10.0.0.1:7000,10.0.0.2:7000": "redis+cluster://:***@10.0.0.1:7000,10.0.0.2:7000",
    "unix:///run/redis.sock?db=1&password=s3cret": "unix:///run/redis.sock?db=1&password=***",
    "not a uri": "not a uri",
}


@pytest.mark.parametrize("uri", sorted(SHOWN))
def test_shown_uris_keep_everything_but_the_password(uri):
    assert shown_uri(uri) == SHOWN[uri]


def test_a_mistyped_uri_is_named_without_its_password():
    with pytest.raises(ValueError) as caught:
        check_store_uri("redis://:s3cret@cache:notaport/0")
    assert "s3cret" not in str(caught.value) and "redis://:***@cache:notaport/0" in str(caught.value)
    with pytest.raises(ValueError) as caught:
        check_store_uri("bogus://:s3cret@cache")
    assert "s3cret" not in str(caught.value)


def test_open_store_still_opens_what_the_check_passes():
    assert isinstance(open_store("memory://?capacity=64"), MemoryStore)


def test_a_policy_file_with_a_bad_store_is_reported_with_the_field():
    with pytest.raises(PolicyError) as caught:
        policy_from_text("store: redis://cache:6379/db0\n", "shop.yaml")
    assert "shop.yaml" in str(caught.value)
    assert "store: store URI 'redis://cache:6379/db0': the database must be a number" in str(caught.value)


def test_proxy_refuses_a_bad_store_before_serving(capsys):
    assert main(["proxy", "--upstream", "http://127.0.0.1:9", "--store", "redis://cache:6379/db0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shieldware proxy: store URI 'redis://cache:6379/db0'")
    assert "Traceback" not in err and "shieldware proxy on" not in err


def test_demo_refuses_a_bad_store_before_serving(capsys):
    assert main(["demo", "--store", "bogus://x", "--port", "9"]) == 1
    err = capsys.readouterr().err
    assert "store: unknown store URI 'bogus://x'" in err and "demo shop on" not in err
