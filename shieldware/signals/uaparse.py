"""Browser, version and OS of a browser UA: a fast path for common families, ua-parser for the rest."""

from __future__ import annotations

import re
from functools import cache

# Checked in order: the first token found decides (Edge, Opera and Samsung also say "Chrome/",
# in-app browsers also say "Safari/", so the more specific tokens come first).
_BROWSER_TOKENS: tuple[tuple[str, str, str], ...] = (
    ("EdgiOS/", "edge", r"EdgiOS/(\d+)"),
    ("EdgA/", "edge", r"EdgA/(\d+)"),
    ("Edg/", "edge", r"Edg/(\d+)"),
    ("Edge/", "edge-legacy", r"Edge/(\d+)"),
    ("OPR/", "opera", r"OPR/(\d+)"),
    ("OPT/", "opera", r"OPT/(\d+)"),
    ("OPiOS/", "opera", r"OPiOS/(\d+)"),
    ("SamsungBrowser/", "samsung", r"SamsungBrowser/(\d+)"),
    ("YaBrowser/", "yandex", r"YaBrowser/(\d+)"),
    ("UCBrowser/", "ucbrowser", r"UCBrowser/(\d+)"),
    ("Vivaldi/", "vivaldi", r"Vivaldi/(\d+)"),
    ("MiuiBrowser/", "miui", r"MiuiBrowser/(\d+)"),
    ("HuaweiBrowser/", "huawei", r"HuaweiBrowser/(\d+)"),
    ("Silk/", "silk", r"Silk/(\d+)"),
    ("DuckDuckGo/", "duckduckgo", r"DuckDuckGo/(\d+)"),
    ("Whale/", "whale", r"Whale/(\d+)"),
    ("FBAV/", "in-app", r"FBAV/(\d+)"),
    ("FBAN/", "in-app", r"FBAV/(\d+)"),
    ("FB_IAB", "in-app", r"FBAV/(\d+)"),
    ("Instagram ", "in-app", r"Instagram (\d+)"),
    ("Line/", "in-app", r"Line/(\d+)"),
    ("Snapchat", "in-app", r"Snapchat/(\d+)"),
    ("musical_ly", "in-app", r"musical_ly_(\d+)"),
    ("BytedanceWebview", "in-app", r"BytedanceWebview/(\d+)"),
    ("GSA/", "in-app", r"GSA/(\d+)"),
    ("MicroMessenger/", "in-app", r"MicroMessenger/(\d+)"),
    ("Twitter", "in-app", r"Twitter for \w+/(\d+)"),
    ("LinkedInApp", "in-app", r"LinkedInApp/(\d+)"),
    ("Pinterest", "in-app", r"Pinterest/(\d+)"),
    ("CriOS/", "chrome-ios", r"CriOS/(\d+)"),
    ("FxiOS/", "firefox-ios", r"FxiOS/(\d+)"),
    ("Firefox/", "firefox", r"Firefox/(\d+)"),
    ("; wv)", "webview", r"Chrome/(\d+)"),
    ("Chrome/", "chrome", r"Chrome/(\d+)"),
    ("Chromium/", "chrome", r"Chromium/(\d+)"),
    ("MSIE ", "ie", r"MSIE (\d+)"),
    ("Trident/", "ie", r"rv:(\d+)"),
)
_VERSIONS = {token: re.compile(pattern) for token, _, pattern in _BROWSER_TOKENS}
_SAFARI_VERSION = re.compile(r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/")
_IOS_VERSION = re.compile(r"OS (\d+)_")

# ua-parser's family names for what the fallback may find.
_FAMILIES = {
    "Chrome": "chrome",
    "Chrome Mobile": "chrome",
    "Chromium": "chrome",
    "HeadlessChrome": "chrome",
    "Chrome Mobile WebView": "webview",
    "Chrome Mobile iOS": "chrome-ios",
    "Edge": "edge",
    "Edge Mobile": "edge",
    "Firefox": "firefox",
    "Firefox Mobile": "firefox",
    "Firefox Beta": "firefox",
    "Firefox iOS": "firefox-ios",
    "Safari": "safari",
    "Mobile Safari": "safari",
    "Mobile Safari UI/WKWebView": "webview",
    "Samsung Internet": "samsung",
    "Opera": "opera",
    "Opera Mobile": "opera",
    "Yandex Browser": "yandex",
    "Facebook": "in-app",
    "Instagram": "in-app",
    "LinkedIn": "in-app",
    "Snapchat": "in-app",
    "Pinterest": "in-app",
    "WeChat": "in-app",
    "Line": "in-app",
    "TikTok": "in-app",
    "Twitter": "in-app",
    "IE": "ie",
    "IE Mobile": "ie",
    "UC Browser": "ucbrowser",
    "MiuiBrowser": "miui",
    "Vivaldi": "vivaldi",
    "Google": "in-app",
}


def operating_system(ua: str) -> str:
    """ua-parser's OS family names, for the platforms browsers run on."""
    if "Windows Phone" in ua:
        return "Windows Phone"
    if "Windows" in ua:
        return "Windows"
    if "iPhone" in ua or "iPad" in ua or "iPod" in ua:
        return "iOS"
    if "Android" in ua:
        return "Android"
    if "CrOS" in ua:
        return "Chrome OS"
    if "Mac OS X" in ua or "Macintosh" in ua:
        return "Mac OS X"
    if "Ubuntu" in ua:
        return "Ubuntu"
    if "Fedora" in ua:
        return "Fedora"
    if "Linux" in ua or "X11" in ua:
        return "Linux"
    return ""


def _number(match: re.Match | None) -> int:
    return int(match.group(1)) if match is not None else 0


def parse_browser(ua: str) -> tuple[str, int, str]:
    """(browser, major version, OS) of a browser UA; ("", 0, os) when it names no browser we know."""
    os_family = operating_system(ua)
    for token, browser, _ in _BROWSER_TOKENS:
        if token in ua:
            return browser, _number(_VERSIONS[token].search(ua)), os_family
    safari = _SAFARI_VERSION.search(ua)
    if safari is not None:
        return "safari", int(safari.group(1)), os_family
    if os_family == "iOS" and "AppleWebKit/" in ua:  # an app's WKWebView: WebKit without Safari's tokens
        return "webview", _number(_IOS_VERSION.search(ua)), os_family
    return _fallback(ua, os_family)


@cache
def ua_parser_instance():
    """ua-parser (the engine behind the `user-agents` package) with its fastest available resolver.

    Only the rare UAs the fast path does not know reach it: even with RE2 it costs 100 to 400 µs a
    string (`user_agents.parse` ~1.2 ms), over the budget for a new UA on the common path.
    """
    import ua_parser

    return ua_parser.Parser(ua_parser.BestAvailableResolver(ua_parser.load_builtins()))


def _fallback(ua: str, os_family: str) -> tuple[str, int, str]:
    import ua_parser

    parsed = ua_parser_instance()(ua, ua_parser.Domain.USER_AGENT | ua_parser.Domain.OS)
    agent = parsed.user_agent
    family = agent.family if agent is not None else "Other"
    browser = _FAMILIES.get(family, "" if family == "Other" else family.lower())
    version = int(agent.major) if agent is not None and agent.major and agent.major.isdigit() else 0
    if not os_family and parsed.os is not None and parsed.os.family != "Other":
        os_family = parsed.os.family
    return browser, version, os_family
