"""Real redis-server processes on free loopback ports for the tests: single servers and a cluster.

Each fixture starts its own server so a test can kill and restart it. When the binary is
missing (a laptop without Redis), tests skip with that reason; CI installs redis-server.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def need_redis() -> None:
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server/redis-cli not installed (apt-get install redis-server); "
                    "scripts/test.sh installs them")


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    import random

    for _ in range(200):
        port = random.randrange(20000, 55000)
        with contextlib.suppress(OSError), socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 10000))
            return port
    raise RuntimeError("no free port pair for a redis cluster node")


def wait_until_ready(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # up, with or without a password
                return
        time.sleep(0.02)
    raise RuntimeError(f"redis-server on 127.0.0.1:{port} did not answer PING within {timeout} s")


class RedisProcess:
    """One redis-server, no persistence, bound to loopback; stop() and start() on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, *extra: str) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        need_redis()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log"), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_ready(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(workdir).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_cluster(workdir: Path, masters: int = 3) -> Iterator[str]:
    """A `masters`-node Redis Cluster on loopback (no replicas); yields its redis+cluster:// URI."""
    need_redis()
    nodes = []
    try:
        for i in range(masters):
            node_dir = workdir / f"node{i}"
            nodes.append(RedisProcess(node_dir, cluster_port(), "--cluster-enabled", "yes", "--cluster-config-file",
                                      str(node_dir / "nodes.conf"), "--cluster-node-timeout", "2000").start())
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run([REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        _wait_for_cluster_ok(nodes[0].port)
        yield "redis+cluster://" + ",".join(addresses)
    finally:
        for node in nodes:
            node.stop()


def _wait_for_cluster_ok(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = subprocess.run([REDIS_CLI, "-p", str(port), "cluster", "info"], capture_output=True, text=True).stdout
        if "cluster_state:ok" in info:
            return
        time.sleep(0.1)
    raise RuntimeError("redis cluster did not reach cluster_state:ok")
