"""Regenerate fingerprints/*.json from shared public data, the crawler-user-agents package and curated.yaml.

Run from the repository root: `python scripts/build_fingerprints.py [--data ../shared/data]`.
The output is deterministic (sorted, no timestamps) so a refresh shows as a reviewable diff.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capture_chromium_headers  # sibling scripts, not part of the package
import tls_fingerprint as tlsprint

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fingerprints"
CURATED = OUT / "sources" / "curated.yaml"

# Which crawler-user-agents tag becomes which of our categories, most telling tag first.
TAG_PRIORITY = (
    ("ai-crawler", "ai-crawler"),
    ("browser-automation", "headless-browser"),
    ("http-library", "http-library"),
    ("scanner", "scanner"),
    ("social-preview", "social-preview"),
    ("search-engine", "search-engine"),
    ("feed-reader", "feed-fetcher"),
    ("monitoring", "monitoring"),
    ("advertising", "advertising"),
    ("archiver", "archiver"),
    ("academic", "research"),
    ("seo", "seo"),
)
# ai.robots.txt "function" texts that describe an agent acting for one user rather than a crawler.
_ASSISTANT_WORDS = re.compile(
    r"assistant|\bagents?\b|coding|on behalf|user[- ](?:initiated|triggered|request)", re.IGNORECASE
)


def write_json(name: str, payload: Any) -> None:
    path = OUT / name
    path.write_text(
        json.dumps(payload, indent=1, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


# ---- bots ------------------------------------------------------------------------------------


def _readable_name(entry: dict) -> str:
    """A short name for a crawler-user-agents entry: the text its pattern matches in its first instance."""
    pattern = entry["pattern"]
    for instance in entry.get("instances") or ():
        found = re.search(pattern, instance)
        if found and found.group(0).strip(" /;(") and len(found.group(0)) <= 40:
            return found.group(0).strip(" /;(")
    return re.sub(r"[\\^$\[\]()?*+|]", "", pattern)[:40] or pattern[:40]


def _category_from_tags(tags: list[str]) -> str:
    for tag, category in TAG_PRIORITY:
        if tag in tags:
            return category
    return "bot"


def build_bots(data: Path, curated: dict) -> list[dict]:
    import crawleruseragents

    entries = []
    for tool in curated["tools"]:
        entries.append({**tool, "operator": "", "origin": "curated"})
    overrides = curated.get("category_overrides") or {}
    ai_robots = json.loads((data / "ai-robots" / "robots.json").read_text(encoding="utf-8"))
    for crawler in crawleruseragents.CRAWLER_USER_AGENTS_DATA:
        name = _readable_name(crawler)
        category = overrides.get(name) or _category_from_tags(crawler.get("tags") or [])
        entries.append(
            {
                "name": name,
                "pattern": crawler["pattern"],
                "category": category,
                "operator": "",
                "url": crawler.get("url", ""),
                "origin": "crawler-user-agents",
            }
        )
    # Dual-use crawlers (Applebot feeds Siri and Spotlight search, facebookexternalhit draws link
    # previews) keep the public catalogue's category, so blocking AI crawlers never breaks them.
    dual_use = {
        e["name"].lower(): e["category"]
        for e in entries
        if e["category"] in ("search-engine", "social-preview")
    }
    for name, about in sorted(ai_robots.items()):
        function = about.get("function", "")
        category = "ai-assistant" if _ASSISTANT_WORDS.search(function) else "ai-crawler"
        category = dual_use.get(name.lower(), category)
        operator = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", about.get("operator", ""))
        if operator.lower().startswith("unclear"):
            operator = ""
        # ai.robots.txt lists product tokens; in a UA they appear as a word, mostly followed by /version.
        pattern = r"(?:^|[^A-Za-z0-9-])" + re.escape(name) + r"(?:[/;) ]|$)"
        entries.append(
            {
                "name": name,
                "pattern": pattern,
                "category": category,
                "operator": operator[:80],
                "url": "",
                "origin": "ai.robots.txt",
            }
        )
    return entries


# ---- verified crawlers -------------------------------------------------------------------------


def _read_cidrs(path: Path) -> list[str]:
    if path.suffix == ".json":
        feed = json.loads(path.read_text(encoding="utf-8"))
        cidrs = []
        for prefix in feed.get("prefixes", []) + feed.get("ipv6_prefixes", []):
            for key in ("ipv4Prefix", "ipv6Prefix", "ip_prefix", "ipv6_prefix"):
                if key in prefix:
                    cidrs.append(prefix[key])
        return cidrs
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def build_verified(data: Path, curated: dict) -> list[dict]:
    crawlers = []
    for spec in curated["verified_crawlers"]:
        cidrs = list(spec.get("cidrs") or [])
        for rel in spec.get("ranges") or ():
            cidrs.extend(_read_cidrs(data / "ip-ranges" / rel))
        networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        v4 = [str(n) for n in ipaddress.collapse_addresses(n for n in networks if n.version == 4)]
        v6 = [str(n) for n in ipaddress.collapse_addresses(n for n in networks if n.version == 6)]
        crawlers.append(
            {
                "name": spec["name"],
                "operator": spec["operator"],
                "pattern": spec["pattern"],
                "category": spec["category"],
                "reverse_dns": spec.get("reverse_dns") or [],
                "range_sources": (spec.get("ranges") or []) + (["curated"] if spec.get("cidrs") else []),
                "ipv4": v4,
                "ipv6": v6,
            }
        )
    return crawlers


# ---- header profiles --------------------------------------------------------------------------


def _signature_documents(data: Path) -> list[dict]:
    docs = []
    for path in sorted((data / "browser-signatures").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    return docs


def _split_header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


def build_header_profiles(data: Path, curated: dict, signatures: list[dict]) -> dict:
    order_feed = json.loads((data / "browser-headers" / "headers-order.json").read_text(encoding="utf-8"))
    families: dict[str, dict] = {}
    for family, names in order_feed.items():
        # The feed lists the HTTP/1 order (capitalised names) then the HTTP/2 order (lowercase, after
        # the pseudo-headers); both arrive lowercased through ASGI, so each is one reference order.
        split = next(i for i, n in enumerate(names) if n.startswith(":"))
        http1 = [n.lower() for n in names[:split]]
        http2 = [n for n in names[split:] if not n.startswith(":")]
        families[family] = {"orders": [http1, http2], "navigations": []}
    for doc in signatures:
        family = doc["browser"]["name"]
        headers = [_split_header(h) for h in doc["signature"]["http2"]["headers"]]
        profile = families.setdefault(family, {"orders": [], "navigations": []})
        order = [name for name, _ in headers]
        if order not in profile["orders"]:
            profile["orders"].append(order)
        profile["navigations"].append(
            {
                "version": str(doc["browser"]["version"]),
                "os": doc["browser"]["os"],
                "headers": [[n, v] for n, v in headers],
            }
        )
    chromium = _chromium_requests()
    if chromium is not None:
        families["chrome"]["captured_chromium"] = chromium
        for headers in chromium["requests"].values():
            order = [name for name, _ in headers]
            for family in ("chrome", "edge"):
                if order not in families[family]["orders"]:
                    families[family]["orders"].append(order)
    for family, orders in (curated["header_facts"].get("extra_orders") or {}).items():
        families.setdefault(family, {"orders": [], "navigations": []})["orders"].extend(orders)
    facts = {k: v for k, v in curated["header_facts"].items() if k != "extra_orders"}
    return {"families": families, "facts": facts}


def _chromium_requests() -> dict | None:
    """Navigation, sub-resource and fetch headers of this machine's Chromium; the last capture when
    Chromium is not installed, so a refresh elsewhere does not lose them."""
    captured = capture_chromium_headers.capture()
    if captured is not None:
        major, requests = captured
        return {"version": major, "source": "headless Chromium captured on 127.0.0.1 by this script",
                "requests": dict(sorted(requests.items()))}
    previous = OUT / "header-profiles.json"
    if previous.is_file():
        return json.loads(previous.read_text(encoding="utf-8"))["families"]["chrome"].get("captured_chromium")
    return None


# ---- TLS fingerprints ---------------------------------------------------------------------------


def _python_client(make_context: Callable[[], ssl.SSLContext]) -> Callable[[int], None]:
    def connect(port: int) -> None:
        context = make_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            context.wrap_socket(raw, server_hostname="shop.example")

    return connect


def _curl_client(port: int) -> None:
    subprocess.run(
        [
            "curl",
            "-sk",
            "--max-time",
            "5",
            "--resolve",
            f"shop.example:{port}:127.0.0.1",
            f"https://shop.example:{port}/",
        ],
        capture_output=True,
        timeout=10,
        check=False,
    )


def _tool_clients() -> dict[str, Callable[[int], None]]:
    """HTTP tools whose TLS stack this machine can run; each is captured on 127.0.0.1."""
    clients: dict[str, Callable[[int], None]] = {"python-ssl": _python_client(ssl.create_default_context)}
    try:
        from urllib3.util.ssl_ import create_urllib3_context

        clients["python-requests"] = _python_client(create_urllib3_context)
    except ImportError:
        pass
    try:
        import httpx

        clients["httpx"] = _python_client(httpx.create_ssl_context)
    except ImportError:
        pass
    if shutil.which("curl"):
        clients["curl"] = _curl_client
    return clients


def build_tls(signatures: list[dict]) -> list[dict]:
    known: dict[tuple[str, str], dict] = {}

    def remember(kind: str, value: str, family: str, client: str, version: str) -> None:
        entry = known.setdefault(
            (kind, value), {"kind": kind, "value": value, "family": family, "client": client, "versions": []}
        )
        if version not in entry["versions"]:
            entry["versions"].append(version)

    for doc in signatures:
        hello = tlsprint.hello_from_signature(doc["signature"]["tls_client_hello"])
        for kind, value in (("ja4", tlsprint.ja4(hello)), ("ja3", tlsprint.ja3(hello))):
            remember(kind, value, doc["browser"]["name"], "browser", str(doc["browser"]["version"]))
    for name, connect in _tool_clients().items():
        try:
            hello = tlsprint.hello_from_record(tlsprint.capture_client_hello(connect))
        except (RuntimeError, ValueError, OSError) as exc:
            print(f"skipped TLS capture of {name}: {exc}", file=sys.stderr)
            continue
        for kind, value in (("ja4", tlsprint.ja4(hello)), ("ja3", tlsprint.ja3(hello))):
            if (kind, value) not in known:  # never relabel a browser's fingerprint as a tool's
                remember(kind, value, name, "tool", "captured on loopback")
    return sorted(known.values(), key=lambda e: (e["client"], e["family"], e["kind"], e["value"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent.parent / "shared" / "data",
        help="the shared public data folder (default: ../../shared/data from the repo)",
    )
    args = parser.parse_args(argv)
    data = args.data if args.data.is_dir() else Path("/work/shared/data")
    curated = yaml.safe_load(CURATED.read_text(encoding="utf-8"))
    signatures = _signature_documents(data)
    write_json(
        "bots.json",
        {
            "about": "Known bots and tools; see README.md for sources and licences.",
            "entries": build_bots(data, curated),
        },
    )
    write_json(
        "verified-crawlers.json",
        {
            "about": "Crawler UA patterns and their operators' address ranges.",
            "crawlers": build_verified(data, curated),
        },
    )
    write_json("header-profiles.json", build_header_profiles(data, curated, signatures))
    write_json(
        "tls-fingerprints.json",
        {
            "about": "JA3/JA4 of real browsers' ClientHello (curl-impersonate "
            "signatures) and of HTTP tools captured on loopback.",
            "fingerprints": build_tls(signatures),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
