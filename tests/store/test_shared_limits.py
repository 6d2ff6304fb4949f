"""Two separate uvicorn processes serving the demo shop on one Redis enforce ONE combined limit.

A client alternating between the two servers is throttled at the policy's limit, not at twice
it — on a single redis:// server and on a 3-master redis+cluster:// (real processes on loopback).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.redis_support import redis_cluster, redis_server
from tests.support import CHROME_NAVIGATION, free_port

LIMIT = 10
POLICY = f"""
version: 1
groups:
  - name: product
    paths: ["/product/*"]
    challenge_above: 90
    block_above: 99
    limits: {{ip: ["{LIMIT}/min"]}}
  - name: browse
    paths: ["/*"]
"""


@contextlib.contextmanager
def demo_processes(store_uri: str, workdir: Path, count: int = 2):
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    procs, ports = [], []
    try:
        for i in range(count):
            port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "shieldware.cli", "demo", "--port", str(port), "--policy", str(policy),
                 "--store", store_uri, "--log", str(workdir / f"decisions{i}.jsonl")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2]))
            ports.append(port)
        for port, proc in zip(ports, procs, strict=True):
            wait_for_http(port, proc)
        yield [f"http://127.0.0.1:{p}" for p in ports]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)


def wait_for_http(port: int, proc: subprocess.Popen, attempts: int = 300) -> None:
    for _ in range(attempts):
        if proc.poll() is not None:
            raise RuntimeError(f"demo server exited: {proc.stderr.read().decode()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        subprocess.run(["sleep", "0.1"], check=False)
    raise RuntimeError(f"demo server on port {port} did not answer")


def alternate(servers: list[str], requests: int) -> list[int]:
    statuses = []
    with httpx.Client(headers=CHROME_NAVIGATION, timeout=10) as client:
        for n in range(requests):
            statuses.append(client.get(f"{servers[n % len(servers)]}/product/{n + 1}").status_code)
    return statuses


def check_one_limit(statuses: list[int]) -> None:
    assert statuses[:LIMIT] == [200] * LIMIT
    assert statuses[LIMIT:] == [429] * (len(statuses) - LIMIT), statuses


@pytest.mark.slow
def test_two_processes_share_one_limit_on_redis(tmp_path):
    with redis_server(tmp_path / "redis") as redis, demo_processes(redis.uri, tmp_path) as servers:
        check_one_limit(alternate(servers, 2 * LIMIT))


@pytest.mark.slow
def test_two_processes_share_one_limit_on_a_redis_cluster(tmp_path):
    with redis_cluster(tmp_path / "cluster") as uri, demo_processes(uri, tmp_path) as servers:
        check_one_limit(alternate(servers, 2 * LIMIT))


@pytest.mark.slow
def test_memory_stores_would_have_let_twice_as_many_through(tmp_path):
    # The control: separate memory:// stores each allow LIMIT, so the shared store is what matters.
    with demo_processes("memory://", tmp_path) as servers:
        statuses = alternate(servers, 2 * LIMIT)
    assert statuses.count(200) == 2 * LIMIT
