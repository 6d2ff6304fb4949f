"""Behind a real nginx reverse proxy, which inserts and rewrites headers, real browsers still pass."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import pytest

from shieldware.datafiles import load_json
from shieldware.demo import build_demo_app
from shieldware.policy import default_policy
from tests.support import free_port, live_server, raw_get

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROFILES = load_json("fingerprints", "header-profiles.json")["families"]

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $http_host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
    }}
  }}
}}
"""


@pytest.fixture()
def shop_behind_nginx(tmp_path):
    if not shutil.which(NGINX):
        pytest.skip("nginx is not installed (Debian package nginx-light)")
    log = tmp_path / "decisions.jsonl"
    policy = default_policy(trusted_proxies=["127.0.0.0/8"], decision_log={"path": str(log), "all": True})
    with live_server(build_demo_app(policy=policy)) as upstream:
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(CONFIG.format(tmp=tmp_path, port=port, upstream=upstream.port))
        proxy = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proxy.poll() is not None:
                        problem = (tmp_path / "error.log").read_text()
                        raise RuntimeError(f"nginx did not start: {problem}") from None
                    time.sleep(0.05)
            yield port, log
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)


def test_browsers_pass_through_nginx_and_https_is_taken_from_the_proxy(shop_behind_nginx):
    port, log = shop_behind_nginx
    families = ("chrome", "edge", "firefox", "safari")
    for i, family in enumerate(families, start=1):
        navigation = [tuple(h) for h in PROFILES[family]["navigations"][-1]["headers"]]
        assert raw_get(port, f"/product/{i}", [("host", f"127.0.0.1:{port}"), *navigation]) == 200
    chrome = [tuple(h) for h in PROFILES["chrome"]["navigations"][-1]["headers"]]
    stripped = [(n, v) for n, v in chrome if not n.startswith("sec-")]
    raw_get(port, "/product/9", [("host", "shop.example"), *stripped])
    records = {r["path"]: r for r in map(json.loads, log.read_text().splitlines())}
    for i in range(1, len(families) + 1):
        codes = [r["code"] for r in records[f"/product/{i}"]["reasons"]]
        assert not [c for c in codes if c.startswith("hdr.")], (families[i - 1], codes)
    # nginx said the client used https, so a Chrome claim without Sec-Fetch-*/client hints is noticed.
    stripped_codes = {r["code"] for r in records["/product/9"]["reasons"]}
    assert {"hdr.no_fetch_metadata", "hdr.no_client_hints"} <= stripped_codes
