"""SIGHUP to a running proxy, as `systemctl reload` sends it: with several workers uvicorn replaces
them one by one and each reads the policy again, a broken policy file is kept out in one clear
line; with one worker the signal no longer ends the proxy (requests in flight finish) and says what
it can and cannot do."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import requests
import yaml

from tests.proxy_support import proxy_process, recorded_upstream, roomy_policy

CURL = {"User-Agent": "curl/8.5.0"}  # allowed in monitor mode, answered by the health endpoint anyway


def modes_seen(url: str, answers: int) -> set[str]:
    """The policy modes `answers` fresh connections are told by the health endpoint (each may reach
    another worker)."""
    return {requests.get(url + "/.shieldware/health", headers=CURL, timeout=10).json()["mode"]
            for _ in range(answers)}


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


def set_mode(policy: Path, mode: str) -> None:
    loaded = yaml.safe_load(policy.read_text())
    loaded["mode"] = mode
    policy.write_text(yaml.safe_dump(loaded))


def test_sighup_to_workers_takes_up_a_changed_policy_and_keeps_a_broken_one_out(tmp_path):
    policy = roomy_policy(tmp_path / "policy.yaml")
    set_mode(policy, "enforce")
    with recorded_upstream() as shop, proxy_process("--upstream", shop.url, "--workers", "2",
                                                      "--policy", str(policy)) as proxy:
        assert modes_seen(proxy.url, 6) == {"enforce"}
        set_mode(policy, "monitor")
        os.kill(proxy.pid, signal.SIGHUP)
        wait_for(lambda: modes_seen(proxy.url, 12) == {"monitor"}, 60, "the workers never took the policy up")

        policy.write_text(policy.read_text() + "mode: [unfinished\n")  # an edit saved half done
        os.kill(proxy.pid, signal.SIGHUP)
        wait_for(lambda: "not started" in proxy.printed(), 60, "the broken policy was never read")
        assert modes_seen(proxy.url, 12) == {"monitor"}  # still served, by the workers it had
        assert requests.get(proxy.url + "/page/1", headers=CURL, timeout=10).status_code == 200
    printed = proxy.printed()
    refusal = next(line for line in printed.splitlines() if "not started" in line)
    assert "the workers serving keep their policy" in refusal and "not valid YAML" in refusal
    assert str(policy) in refusal
    assert "Traceback" not in printed


def test_sighup_to_one_worker_leaves_it_serving_and_says_what_a_reload_needs(tmp_path):
    with recorded_upstream() as shop, proxy_process("--upstream", shop.url, "--monitor") as proxy:
        answers: list[requests.Response] = []
        slow = threading.Thread(target=lambda: answers.append(
            requests.get(proxy.url + "/slow?seconds=2", headers=CURL, timeout=20)))
        slow.start()
        assert shop.recorder.slow_started.wait(10)
        os.kill(proxy.pid, signal.SIGHUP)
        slow.join(20)
        assert [response.status_code for response in answers] == [200]
        assert answers[0].text == "finally"  # the request in flight finished
        assert requests.get(proxy.url + "/page/2", headers=CURL, timeout=10).status_code == 200
        assert proxy.process.poll() is None
    assert "SIGHUP" in proxy.printed() and "--workers 2 or more" in proxy.printed()
