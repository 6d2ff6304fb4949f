"""Header signal: a fingerprint of the client's header stack, and whether it fits the claimed browser."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from shieldware.datafiles import load_json
from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.policy import register_attribute
from shieldware.signals.base import Inspection
from shieldware.tls_hello import STACKS_OF_ENGINE
from shieldware.tls_hello import stack_of as tls_stack_of

if TYPE_CHECKING:
    from shieldware.signals.useragent import UserAgentInfo

register_reason(
    "hdr.browser_missing",
    55,
    "The request claims to be a browser but lacks headers every such "
    "browser sends (Accept, Accept-Language, Accept-Encoding).",
)
register_reason(
    "hdr.no_fetch_metadata",
    30,
    "A modern browser claim without Sec-Fetch-* headers, which it "
    "sends on every request to a secure (https or localhost) site.",
)
register_reason(
    "hdr.no_client_hints",
    30,
    "A Chrome or Edge (90+) claim without the sec-ch-ua client hints "
    "those browsers send on every request to a secure site.",
)
register_reason(
    "hdr.client_hint_mismatch",
    # Alone it challenges login and checkout (40) but not browsing (50+): a UA-switcher extension
    # produces the same contradiction for a real shopper.
    45,
    "The client hints contradict the User-Agent (another platform, "
    "mobile flag or browser version), or a browser that never sends client hints sent them.",
)
register_reason(
    "hdr.version_mismatch",
    # As the hint mismatch: a UA-switcher extension set to an old browser produces it for a person.
    45,
    "The request sent headers the claimed browser version never sent (Sec-Fetch-* from a browser "
    "older than them): a newer client under an older browser's User-Agent, as UA lists give.",
)
register_reason(
    "hdr.fetch_metadata_forged",
    # As hdr.browser_missing: no browser sends these together, yet a challenge, not a block, is
    # the answer, since a privacy extension could in principle rewrite them for a person.
    55,
    "The Sec-Fetch-* headers contradict each other or the request (a user flag on a fetch, a "
    "navigation for an image or with a HEAD, a partial or malformed set): a script wrote them.",
)
register_reason(
    "hdr.headless_hint",
    70,
    "The sec-ch-ua client hint names HeadlessChrome although the User-Agent claims an ordinary browser.",
)
register_reason(
    "hdr.order_mismatch",
    # Below every group's challenge line on its own: a browser version whose order the data lacks
    # must not cost a shopper a challenge; with any other finding it adds up quickly.
    35,
    "The headers arrived in an order the claimed browser never uses; "
    "HTTP libraries order headers their own way.",
)
register_reason(
    "hdr.accept_not_browser",
    35,
    "A top-level navigation with an Accept header no browser sends "
    "on a navigation (browsers always ask for text/html).",
)
register_reason(
    "hdr.http10_browser",
    # As hdr.browser_missing: no browser of this century speaks HTTP/1.0, yet an old forward proxy
    # in front of a person might still downgrade a request, so a challenge, not a block.
    55,
    "A browser claim over HTTP/1.0, which browsers have not spoken since the 1990s: raw sockets, "
    "ApacheBench and old HTTP libraries do. Judged only where the proxy holds the client's own connection.",
)
register_reason(
    "tls.mismatch",
    60,
    "The TLS fingerprint (passed by the edge, or read by the proxy from the ClientHello) belongs "
    "to another browser or to an HTTP library, not to the browser the User-Agent claims.",
)

register_attribute(
    "fingerprint",
    "a short stable hash of the client's header stack (method, HTTP version, "
    "header names in order, cookie/referer presence, language) — a window key",
)
register_attribute(
    "tls.client",
    "what the TLS fingerprint belongs to: a browser family (chrome, firefox, "
    "safari), a tool name, or unknown; read by the proxy from the ClientHello, a TLS stack "
    "(blink, webkit, gecko, library); from nginx's $ssl_ciphers, grease or no-grease",
)

# Headers proxies, CDNs and load balancers add or rewrite; a fingerprint or order check that counted
# them would change with the shop's infrastructure, not with the client.
_INFRASTRUCTURE = frozenset(
    {
        "host",
        "connection",
        "forwarded",
        "via",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-server",
        "x-forwarded-prefix",
        "x-real-ip",
        "x-request-id",
        "x-amzn-trace-id",
        "true-client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "cdn-loop",
        "x-ja3",
        "x-ja4",
        "x-shieldware-tls",
        "x-tls-ciphers",
        "keep-alive",
        "proxy-connection",
        "traceparent",
        "tracestate",
        "x-envoy-external-address",
    }
)
_INFRASTRUCTURE_PREFIXES = (
    "cf-",
    "x-forwarded-",
    "x-amz-cf-",
    "fastly-",
    "akamai-",
    "x-vercel-",
    "x-azure-",
    "x-arr-",
    "x-original-",
    "x-envoy-",
)
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_BRAND = re.compile(r'"([^"]*)"\s*;\s*v\s*=\s*"(\d+)')
_CHROME_MAJOR = re.compile(r"(?:Chrome|Chromium|CriOS)/(\d+)")
_EDGE_MAJOR = re.compile(r"Edg[A-Za-z]*/(\d+)")
_PROFILE_OF_ENGINE = {"blink": ("chrome", "edge"), "gecko": ("firefox",), "webkit": ("safari",)}
# ua-parser OS family → the sec-ch-ua-platform values that OS's Chromium may send. Linux allows
# Android and ChromeOS: Chrome on Android in "desktop site" mode sends a Linux UA with platform Android.
_PLATFORMS = {
    "Windows": {"Windows"},
    "Mac OS X": {"macOS"},
    "Android": {"Android"},
    "Chrome OS": {"Chrome OS", "Chromium OS"},
    "Linux": {"Linux", "Android", "Chrome OS", "Chromium OS"},
    "Ubuntu": {"Linux"},
    "Fedora": {"Linux"},
}
_DESKTOP_OS = ("Windows", "Mac OS X")
# Fetch Metadata as browsers send it (W3C Fetch Metadata and the Fetch standard): values are
# lowercase tokens; Sec-Fetch-User is sent only as ?1 and only on a navigation; a navigation is a
# GET or POST for a document (frame, object, embed), never for a sub-resource. Sec-Fetch-Site's
# value is not read: it changes per request of one client, so plan shapes leave it out.
_FETCH_TOKEN = re.compile(r"[a-z][a-z-]*\Z")
_NAVIGATION_MODES = frozenset({"navigate", "nested-navigate"})  # nested-: frames, Chrome 76-79
_SUBRESOURCE_DESTS = frozenset({
    "empty", "image", "script", "style", "font", "audio", "video", "track", "manifest", "worker",
    "sharedworker", "serviceworker", "audioworklet", "paintworklet", "report", "xslt", "json",
})
_NAVIGATION_METHODS = ("GET", "POST")
_FETCH_OTHERS = ("sec-fetch-site", "sec-fetch-dest", "sec-fetch-user")
_WORKER_DESTS = frozenset({"worker", "sharedworker", "serviceworker"})
# Request kinds a browser sends in an order of its own (fingerprints/sources/curated.yaml,
# kind_orders, captured from Chromium): a worker's script and a WebSocket handshake also come
# without client hints, a handshake without Accept or Sec-Fetch-* too.
WEBSOCKET, WORKER, SPECULATION = "websocket", "worker", "speculation"
_WITHOUT_HINTS = (WEBSOCKET, WORKER)
_BROWSER_HEADERS = ("accept", "accept-language", "accept-encoding")
_HANDSHAKE_HEADERS = ("accept-language", "accept-encoding")


def request_kind(facts: RequestFacts) -> str | None:
    """The kind of a request whose headers follow their own rules, None for pages, sub-resources
    and fetches (the family's ordinary orders)."""
    header_map = facts.header_map
    if facts.scheme in ("ws", "wss") or (  # a server's websocket scope, or a forward-auth check of one
            facts.method == "GET" and header_map.get("upgrade", "").lower() == "websocket"
            and "sec-websocket-key" in header_map and "sec-websocket-version" in header_map):
        return WEBSOCKET
    if header_map.get("sec-fetch-dest") in _WORKER_DESTS:
        return WORKER
    if "sec-purpose" in header_map and header_map.get("sec-fetch-mode") == "navigate":
        return SPECULATION  # a prefetch or prerender of a page the user may open next
    return None


def _is_infrastructure(name: str) -> bool:
    return name in _INFRASTRUCTURE or name.startswith(_INFRASTRUCTURE_PREFIXES)


# ---- our own header fingerprint ---------------------------------------------------------------


@lru_cache(maxsize=8192)
def _stack_digest(names: tuple[str, ...]) -> str:
    return hashlib.blake2b("\n".join(names).encode("latin-1", "replace"), digest_size=6).hexdigest()


@lru_cache(maxsize=8192)
def _stack(sent: tuple[str, ...]) -> tuple[int, str]:
    """Count and digest of the names minus proxy-added ones. Cached: a client stack sends the
    same names on every request, and filtering them cost more than the whole lookup."""
    names = tuple(name for name in sent if not _is_infrastructure(name))
    return len(names), _stack_digest(names)


def header_fingerprint(facts: RequestFacts, names: tuple[str, ...] | None = None) -> str:
    """`<method><version><cookie><referer><count><lang>_<digest>`, e.g. `ge11nr12en_4c0d1b9a2e77`.

    The readable prefix says what varies per request of one client (method, whether it had a
    cookie or referer, its language); the digest covers the header names in arrival order minus
    those proxies add, so one client stack keeps one fingerprint across pages and addresses.
    Values (UA text, cookie values) are left out on purpose: they vary per user, not per stack.
    """
    count, digest = _stack(names if names is not None else tuple([header[0] for header in facts.headers]))
    header_map = facts.header_map
    version = (facts.http_version.replace(".", "") + "00")[:2]  # "1.1" → 11, "2" → 20
    language = header_map.get("accept-language", "")[:2].lower()
    if not language.isalpha():
        language = "xx"
    return (
        f"{facts.method[:2].lower()}{version}{'c' if 'cookie' in header_map else 'n'}"
        f"{'r' if 'referer' in header_map else 'n'}{min(count, 99):02d}{language}_{digest}"
    )


# ---- profiles ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderProfiles:
    """Reference header orders per browser family and the version facts the checks need."""

    orders: dict[str, tuple[dict[str, int], ...]]
    fetch_metadata_since: dict[str, int]
    client_hints_since: dict[str, int]
    fetch_metadata_first: dict[str, int]
    client_hints_first: dict[str, int]
    fetch_metadata_full_set_since: dict[str, int]
    kind_orders: dict[str, dict[str, tuple[dict[str, int], ...]]]

    @classmethod
    def from_json(cls, document: dict) -> HeaderProfiles:
        orders = {family: _references(profile["orders"]) for family, profile in document["families"].items()}
        facts = document["facts"]
        kind_orders = {kind: {family: _references(family_orders) for family, family_orders in families.items()}
                       for kind, families in facts["kind_orders"].items()}
        return cls(orders, dict(facts["fetch_metadata_since"]), dict(facts["client_hints_since"]),
                   dict(facts["fetch_metadata_first"]), dict(facts["client_hints_first"]),
                   dict(facts["fetch_metadata_full_set_since"]), kind_orders)


def _references(orders: list[list[str]]) -> tuple[dict[str, int], ...]:
    """Header orders as name → position, minus the names proxies add or move."""
    return tuple({name: i for i, name in enumerate(order) if not _is_infrastructure(name)} for order in orders)


@cache
def shipped_profiles() -> HeaderProfiles:
    return HeaderProfiles.from_json(load_json("fingerprints", "header-profiles.json"))


def order_violation(names: Sequence[str], references: Sequence[dict[str, int]]) -> tuple[str, str] | None:
    """None when the names' relative order fits at least one reference order; else the first
    out-of-order pair against the first reference (for the reason's detail).

    Names a reference does not know are skipped, so extra headers (proxies, extensions, app
    headers) never make a real browser fail.
    """
    first_problem: tuple[str, str] | None = None
    for reference in references:
        last_name, last_index = "", -1
        problem: tuple[str, str] | None = None
        for name in names:
            index = reference.get(name)
            if index is None:
                continue
            if index < last_index:
                problem = (last_name, name)
                break
            last_name, last_index = name, index
        if problem is None:
            return None
        if first_problem is None:
            first_problem = problem
    return first_problem


def fetch_metadata_problems(header_map: Mapping[str, str], method: str, full_set: bool) -> list[str]:
    """What in a request's Sec-Fetch-* headers no browser sends (empty when nothing): `full_set`
    when the claimed browser version always sends Site, Mode and Dest together."""
    problems = []
    mode = header_map.get("sec-fetch-mode")
    dest = header_map.get("sec-fetch-dest")
    user = header_map.get("sec-fetch-user")
    for name, value in (("Mode", mode), ("Dest", dest)):
        if value is not None and not _FETCH_TOKEN.match(value):
            problems.append(f"Sec-Fetch-{name} is {value[:40]!r}, not a token a browser sends")
    if full_set:
        missing = [name for name in ("site", "mode", "dest") if f"sec-fetch-{name}" not in header_map]
        if missing:
            problems.append("no Sec-Fetch-" + ", Sec-Fetch-".join(n.title() for n in missing)
                            + ", which this browser sends with the others on every request")
    navigation = mode in _NAVIGATION_MODES
    if user is not None and user != "?1":
        problems.append(f"Sec-Fetch-User is {user[:40]!r}; browsers send ?1 or nothing")
    if user is not None and mode is not None and not navigation:
        problems.append(f"Sec-Fetch-User on a {mode} request; browsers send it on navigations only")
    if navigation and dest in _SUBRESOURCE_DESTS:
        problems.append(f"a navigation for a sub-resource ({dest})")
    if navigation and method not in _NAVIGATION_METHODS:
        problems.append(f"a navigation with {method[:20]}; browsers navigate with GET or POST")
    return problems


@lru_cache(maxsize=8192)
def _claimed_versions(user_agent: str) -> tuple[int, int]:
    """(Chromium major, Edge major) written in a UA, 0 when absent."""
    chrome = _CHROME_MAJOR.search(user_agent)
    edge = _EDGE_MAJOR.search(user_agent)
    return (int(chrome.group(1)) if chrome else 0, int(edge.group(1)) if edge else 0)


@lru_cache(maxsize=4096)
def _brands(sec_ch_ua: str) -> dict[str, int]:
    return {name.strip(): int(version) for name, version in _BRAND.findall(sec_ch_ua)}


def _secure_context(facts: RequestFacts) -> bool:
    """Browsers send Sec-Fetch-* and client hints only to https and localhost origins."""
    # A forwarding header is read even from untrusted peers (see over_https): claiming https only
    # makes these checks apply, so a forged header can cost its sender, never help it.
    if facts.over_https:
        return True
    host = facts.host.lower()
    return host.startswith(_LOCAL_HOSTS) or host.startswith("127.")


# ---- TLS fingerprints -------------------------------------------------------------------------


@cache
def shipped_tls_fingerprints() -> dict[str, tuple[str, str]]:
    """JA3/JA4 value → (client kind, family or tool name)."""
    table = {}
    for entry in load_json("fingerprints", "tls-fingerprints.json")["fingerprints"]:
        table[entry["value"].lower()] = (entry.get("client", "browser"), entry["family"])
    return table


_ENGINE_OF_TLS_FAMILY = {"chrome": "blink", "edge": "blink", "firefox": "gecko", "safari": "webkit"}


_KIND_OF_STACK = {"library": "library", "no-grease": "firefox or a library"}


def _stacks_disagree(stack: str, engine: str) -> bool:
    """Whether a TLS stack (read from the ClientHello, or from nginx's cipher list) cannot be the
    browser engine the UA claims (see tls_hello.STACKS_OF_ENGINE)."""
    expected = STACKS_OF_ENGINE.get(engine)
    return expected is not None and stack not in expected


class HeaderSignal:
    name = "headers"
    lane = "shape"  # reads only header names and values a plan's shape keeps (VALUE_FREE_HEADERS)

    def __init__(
        self,
        profiles: HeaderProfiles | None = None,
        tls_fingerprints: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self._profiles = profiles
        self._tls = tls_fingerprints
        # (header names as sent, engine) -> order problem: the same stack gets the same answer.
        self._order_problems: dict[tuple[tuple[str, ...], str], tuple[str, str] | None] = {}
        self._hint_findings: dict[tuple, tuple[tuple[str, dict], ...]] = {}

    @property
    def profiles(self) -> HeaderProfiles:
        if self._profiles is None:
            self._profiles = shipped_profiles()
        return self._profiles

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        if facts.source != "live":
            # A log line keeps the UA and perhaps the referer, never the header set: judging its
            # "missing" headers would flag every browser in yesterday's log.
            return
        names = tuple([header[0] for header in facts.headers])  # the stack as sent, for both uses below
        inspection.attrs["fingerprint"] = header_fingerprint(facts, names)
        info = inspection.attrs.get("ua.info")
        if info is None or info.is_bot or not info.browser:
            return
        self._check_tls(facts, inspection, info)
        if facts.own_connection and facts.http_version == "1.0":  # behind an edge it is the edge's version
            inspection.add("hdr.http10_browser", browser=info.browser)
        header_map = facts.header_map
        kind = request_kind(facts)
        expected = _HANDSHAKE_HEADERS if kind == WEBSOCKET else _BROWSER_HEADERS
        missing = [name for name in expected if name not in header_map]
        if missing:
            inspection.add("hdr.browser_missing", browser=info.browser, missing=missing)
        engine = info.engine
        self._check_order(names, inspection, info.browser, engine, kind)
        if engine == "blink":
            self._check_client_hints(facts, inspection, info, kind)
        elif "sec-ch-ua" in header_map and engine in ("gecko", "webkit"):
            inspection.add(
                "hdr.client_hint_mismatch",
                browser=info.browser,
                problem=f"{info.browser} never sends sec-ch-ua",
            )
        self._check_fetch_metadata(facts, inspection, info, kind)

    def _check_order(self, names: tuple[str, ...], inspection: Inspection, browser: str, engine: str,
                     kind: str | None) -> None:
        families = _PROFILE_OF_ENGINE.get(engine)
        if families is None:
            return
        key = (names, engine, kind)
        if key in self._order_problems:
            problem = self._order_problems[key]
        else:
            # A request of its own kind is held to that kind's orders for the family, if the data
            # has any: an order the data lacks is not judged.
            orders = self.profiles.orders if kind is None else self.profiles.kind_orders.get(kind, {})
            references = [ref for family in families for ref in orders.get(family, ())]
            # HTTP/2 may split cookie into several headers: keep the first
            problem = order_violation(list(dict.fromkeys(names)), references) if references else None
            if len(self._order_problems) >= 4096:
                self._order_problems.clear()
            self._order_problems[key] = problem
        if problem is not None:
            inspection.add(
                "hdr.order_mismatch", browser=browser, sent_first=problem[1], expected_first=problem[0]
            )

    def _check_fetch_metadata(self, facts: RequestFacts, inspection: Inspection, info: UserAgentInfo,
                              kind: str | None) -> None:
        header_map = facts.header_map
        mode = header_map.get("sec-fetch-mode")
        browser, version = info.browser, info.browser_version
        if info.engine == "blink":
            browser, version = "chrome", _claimed_versions(facts.user_agent)[0]
        if mode is None and not any(name in header_map for name in _FETCH_OTHERS):
            if kind == WEBSOCKET or not _secure_context(facts):  # Chromium's handshakes send none
                return
            since = self.profiles.fetch_metadata_since.get(browser)
            if since is not None and version >= since:
                inspection.add("hdr.no_fetch_metadata", browser=info.browser, version=version)
            return
        first = self.profiles.fetch_metadata_first.get(browser)
        if first is not None and 0 < version < first:
            # A browser cannot send a header it predates: a newer client wearing an older UA.
            inspection.add("hdr.version_mismatch", browser=info.browser, version=version,
                           problem=f"Sec-Fetch-* headers, which {browser} first sent in version {first}")
        since = None if kind == WEBSOCKET else self.profiles.fetch_metadata_full_set_since.get(browser)
        problems = fetch_metadata_problems(header_map, facts.method, since is not None and version >= since)
        if problems:
            inspection.add("hdr.fetch_metadata_forged", browser=info.browser, problems=problems)
        if mode == "navigate" and header_map.get("sec-fetch-dest", "document") == "document":
            accept = header_map.get("accept", "")
            if "text/html" not in accept:
                inspection.add("hdr.accept_not_browser", browser=info.browser, accept=accept[:100])

    def _check_client_hints(self, facts: RequestFacts, inspection: Inspection, info: UserAgentInfo,
                            kind: str | None) -> None:
        # Cached by everything the findings depend on: a browser sends the same UA and hints on
        # every request, so parsing them again per request is wasted work.
        header_map = facts.header_map
        sec_ch_ua = header_map.get("sec-ch-ua")
        key = (facts.user_agent, sec_ch_ua, header_map.get("sec-ch-ua-platform"),
               header_map.get("sec-ch-ua-mobile"), info.browser, info.os, info.device,
               sec_ch_ua is None and _secure_context(facts) and kind not in _WITHOUT_HINTS)
        findings = self._hint_findings.get(key)
        if findings is None:
            findings = self._client_hint_findings(facts, info, key[-1])
            if len(self._hint_findings) >= 4096:
                self._hint_findings.clear()
            self._hint_findings[key] = findings
        for code, detail in findings:
            inspection.add(code, **detail)

    def _client_hint_findings(self, facts: RequestFacts, info: UserAgentInfo,
                              hints_expected: bool) -> tuple[tuple[str, dict], ...]:
        """`hints_expected`: a secure context and a request kind that carries them (the cache key's
        last part, so both read it the same way)."""
        header_map = facts.header_map
        chrome_major, edge_major = _claimed_versions(facts.user_agent)
        sec_ch_ua = header_map.get("sec-ch-ua")
        if sec_ch_ua is None:
            since = self.profiles.client_hints_since.get(info.browser)
            if hints_expected and since is not None and chrome_major >= since:
                return (("hdr.no_client_hints", {"browser": info.browser, "version": chrome_major}),)
            return ()
        findings: list[tuple[str, dict]] = []
        brands = _brands(sec_ch_ua)
        if any("headless" in brand.lower() for brand in brands):
            findings.append(("hdr.headless_hint", {"sec_ch_ua": sec_ch_ua[:120]}))
        problems = []
        first = self.profiles.client_hints_first.get(info.browser, self.profiles.client_hints_first["chrome"])
        if 0 < chrome_major < first:  # even with brands forged to match: that Chrome never sent them
            problems.append(f"sec-ch-ua from Chrome {chrome_major}, older than client hints (Chrome {first})")
        chromium = brands.get("Chromium") or brands.get("Google Chrome")
        if chromium and chrome_major and chromium != chrome_major:
            problems.append(f"sec-ch-ua says Chromium {chromium}, the UA says {chrome_major}")
        edge = brands.get("Microsoft Edge")
        if edge and edge_major and edge != edge_major:
            problems.append(f"sec-ch-ua says Edge {edge}, the UA says {edge_major}")
        elif edge and not edge_major:  # Brave and Vivaldi send a Chrome UA, but never Edge's brand
            problems.append(f"sec-ch-ua says Edge {edge}, the UA names no Edge")
        platform = header_map.get("sec-ch-ua-platform", "").strip('" ')
        allowed = _PLATFORMS.get(info.os)
        if platform and allowed is not None and platform not in allowed and platform != "Unknown":
            problems.append(f"sec-ch-ua-platform is {platform}, the UA says {info.os}")
        mobile = header_map.get("sec-ch-ua-mobile", "").strip()
        if mobile == "?0" and "Mobile" in facts.user_agent and info.device == "mobile":
            problems.append("sec-ch-ua-mobile says desktop, the UA says mobile")
        elif mobile == "?1" and info.os in _DESKTOP_OS:
            problems.append(f"sec-ch-ua-mobile says mobile, the UA says {info.os} desktop")
        if problems:
            findings.append(("hdr.client_hint_mismatch", {"browser": info.browser, "problems": problems}))
        return tuple(findings)

    def _check_tls(self, facts: RequestFacts, inspection: Inspection, info: UserAgentInfo) -> None:
        fingerprint = facts.tls_fingerprint
        if not fingerprint:
            return
        stack = tls_stack_of(fingerprint)
        if stack is not None:  # the proxy's ClientHello reading, or nginx's cipher list (tls_hello.py)
            inspection.attrs["tls.client"] = stack
            if _stacks_disagree(stack, info.engine):
                inspection.add("tls.mismatch", claimed=info.browser, tls_client=stack,
                               kind=_KIND_OF_STACK.get(stack, "browser"))
            return
        if self._tls is None:
            self._tls = shipped_tls_fingerprints()
        known = self._tls.get(fingerprint.strip().lower())
        if known is None:
            inspection.attrs["tls.client"] = "unknown"  # browsers update often: unknown is not suspicious
            return
        kind, family = known
        inspection.attrs["tls.client"] = family
        if kind != "browser" or _ENGINE_OF_TLS_FAMILY.get(family) != info.engine:
            inspection.add("tls.mismatch", claimed=info.browser, tls_client=family, kind=kind)
