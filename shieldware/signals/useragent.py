"""User-agent signal: who the request says it is — a browser, a known tool, or nobody at all."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.policy import register_attribute
from shieldware.signals.base import Inspection

register_reason("ua.missing", 60, "The request sent no User-Agent; every browser sends one.")
register_reason("ua.tool", 85, "The User-Agent names an HTTP library, command-line tool or scraping framework.")
register_reason("ua.headless", 70, "The User-Agent names a headless or automated browser.")
register_reason("ua.known_bot", 40, "The User-Agent is a declared bot or crawler.")

register_attribute("ua.category", "what the user agent is: browser, http-library, scraper-framework, "
                   "headless-browser, search-engine, ai-crawler, ... or unknown")
register_attribute("ua.name", "the tool or bot name the user agent declares (curl, Googlebot, ...)")
register_attribute("ua.browser", "the browser family a browser user agent claims (chrome, firefox, safari, edge)")
register_attribute("ua.is_bot", "true when the user agent declares automation")

# Obvious tools, as (regex, name, category). The fingerprints issue replaces this short list
# with the shipped bot catalogue; these are the ones a shop sees every hour.
_TOOLS = (
    (r"\bcurl/", "curl", "http-library"),
    (r"\bWget/", "wget", "http-library"),
    (r"python-requests/", "python-requests", "http-library"),
    (r"Python-urllib/", "python-urllib", "http-library"),
    (r"python-httpx/", "httpx", "http-library"),
    (r"aiohttp/", "aiohttp", "http-library"),
    (r"Go-http-client/", "go-http-client", "http-library"),
    (r"okhttp/", "okhttp", "http-library"),
    (r"\bJava/", "java", "http-library"),
    (r"libwww-perl/", "libwww-perl", "http-library"),
    (r"node-fetch/|\baxios/|undici", "node-http", "http-library"),
    (r"Scrapy/", "scrapy", "scraper-framework"),
    (r"HeadlessChrome/", "headless-chrome", "headless-browser"),
    (r"PhantomJS/", "phantomjs", "headless-browser"),
)
_TOOL_RE = re.compile("|".join(f"(?P<t{i}>{pattern})" for i, (pattern, _, _) in enumerate(_TOOLS)))
_BROWSER_RE = re.compile(r"(?P<edge>Edg/(?P<ev>\d+))|(?P<firefox>Firefox/(?P<fv>\d+))|"
                         r"(?P<chrome>Chrome/(?P<cv>\d+))|"
                         r"(?P<safari>Version/(?P<sv>\d+)[.\d]* (?:Mobile/\S+ )?Safari/)")
_BOT_WORDS = re.compile(r"bot\b|crawl|spider|slurp|fetch", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UserAgentInfo:
    is_bot: bool
    category: str
    name: str
    browser: str
    browser_version: int
    os: str = ""
    device: str = "other"


@lru_cache(maxsize=8192)
def classify_user_agent(ua: str) -> UserAgentInfo:
    """Classify a User-Agent string; cached because a shop sees the same few thousand UAs all day."""
    if not ua.strip():
        return UserAgentInfo(True, "unknown", "", "", 0, device="other")
    tool = _TOOL_RE.search(ua)
    if tool is not None:
        _, name, category = _TOOLS[int(tool.lastgroup[1:])]
        return UserAgentInfo(True, category, name, "", 0, device="bot")
    if _BOT_WORDS.search(ua):
        return UserAgentInfo(True, "bot", ua.split("/", 1)[0][:40], "", 0, device="bot")
    match = _BROWSER_RE.search(ua) if ua.startswith("Mozilla/5.0") else None
    if match is None:
        return UserAgentInfo(False, "unknown", "", "", 0)
    for family in ("edge", "firefox", "chrome", "safari"):
        if match.group(family):
            break
    version = int(match.group({"edge": "ev", "firefox": "fv", "chrome": "cv", "safari": "sv"}[family]))
    mobile = "Mobile" in ua or "Android" in ua
    return UserAgentInfo(False, "browser", family, family, version, device="mobile" if mobile else "desktop")


class UserAgentSignal:
    name = "useragent"

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        ua = facts.header_map.get("user-agent")
        if ua is None or not ua.strip():
            inspection.attrs["ua.category"] = "unknown"
            inspection.attrs["ua.is_bot"] = True
            inspection.add("ua.missing")
            return
        info = classify_user_agent(ua)
        attrs = inspection.attrs
        attrs["ua.info"] = info
        attrs["ua.category"] = info.category
        attrs["ua.name"] = info.name
        attrs["ua.browser"] = info.browser
        attrs["ua.is_bot"] = info.is_bot
        if not info.is_bot:
            return
        if info.category == "headless-browser":
            inspection.add("ua.headless", name=info.name)
        elif info.category in ("http-library", "scraper-framework"):
            inspection.add("ua.tool", name=info.name, category=info.category)
        else:
            inspection.add("ua.known_bot", name=info.name, category=info.category)
