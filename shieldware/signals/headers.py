"""Header signal: does a request that claims to be a browser carry the headers that browser sends?"""

from __future__ import annotations

from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.signals.base import Inspection

register_reason("hdr.browser_missing", 55, "The request claims to be a browser but lacks headers every such "
                "browser sends (Accept, Accept-Language, Accept-Encoding).")
register_reason("hdr.no_fetch_metadata", 30, "A modern browser claim without Sec-Fetch-* headers, which it "
                "sends on every request.")

_EVERY_BROWSER_SENDS = ("accept", "accept-language", "accept-encoding")
# First versions that send Sec-Fetch-* on every request (Chrome 80, Firefox 90, Safari 16.4, Edge 80).
_FETCH_METADATA_SINCE = {"chrome": 80, "edge": 80, "firefox": 90, "safari": 17}


class HeaderSignal:
    name = "headers"

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        browser = inspection.attrs.get("ua.browser")
        if not browser:
            return
        header_map = facts.header_map
        missing = [name for name in _EVERY_BROWSER_SENDS if name not in header_map]
        if missing:
            inspection.add("hdr.browser_missing", browser=browser, missing=missing)
        info = inspection.attrs.get("ua.info")
        since = _FETCH_METADATA_SINCE.get(browser)
        if (since is not None and info is not None and info.browser_version >= since
                and "sec-fetch-mode" not in header_map):
            inspection.add("hdr.no_fetch_metadata", browser=browser, version=info.browser_version)
