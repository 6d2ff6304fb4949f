"""Real Redis servers for the tests that need them: one single server and one 3-master cluster per module."""

from __future__ import annotations

import pytest

from tests.redis_support import redis_cluster, redis_server


@pytest.fixture(scope="module")
def redis_uri(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.uri


@pytest.fixture(scope="module")
def cluster_uri(tmp_path_factory):
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as uri:
        yield uri
