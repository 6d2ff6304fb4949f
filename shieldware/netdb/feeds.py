"""Download the upstream range feeds (`shieldware geoip update`) into a folder `read_feeds` understands.

Official provider feeds where the provider publishes one; the maintained aggregations the shipped
lists came from for the rest. All or nothing: if one download fails, nothing is rebuilt, because a
database missing a provider would silently stop tagging it.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

_GSTATIC = "https://www.gstatic.com/ipranges"
_GOOGLE_CRAWLERS = "https://developers.google.com/static/search/apis/ipranges"
_LORD_ALFRED = "https://raw.githubusercontent.com/lord-alfred/ipranges/main"
_CLOUD_IPS = "https://raw.githubusercontent.com/jonhadfield/cloud-ips/main"
_X4BNET = "https://raw.githubusercontent.com/X4BNet/lists_vpn/main/output"

# (url, file name under the download folder). File names are what `catalogue.PROVIDERS` recognises.
FEEDS: tuple[tuple[str, str], ...] = (
    ("https://ip-ranges.amazonaws.com/ip-ranges.json", "aws.json"),
    (f"{_GSTATIC}/cloud.json", "gcp.json"),
    (f"{_GSTATIC}/goog.json", "google.json"),
    (f"{_GOOGLE_CRAWLERS}/googlebot.json", "googlebot.json"),
    (f"{_GOOGLE_CRAWLERS}/special-crawlers.json", "googlesc.json"),
    (f"{_GOOGLE_CRAWLERS}/user-triggered-fetchers.json", "googleutf.json"),
    ("https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json", "oci.json"),
    ("https://www.bing.com/toolbox/bingbot.json", "bingbot.json"),
    (f"{_CLOUD_IPS}/linode.json", "linode.json"),
    (f"{_CLOUD_IPS}/hetzner.json", "hetzner.json"),
    (f"{_CLOUD_IPS}/ovh.json", "ovh.json"),
    *(
        (f"{_LORD_ALFRED}/{folder}/{name}", f"lord-alfred/{folder}/{name}")
        for folder, names in (
            ("amazon", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("microsoft", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("oracle", ("ipv4_merged.txt",)),
            ("digitalocean", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("vultr", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("cloudflare", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("github", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("protonvpn", ("ipv4_merged.txt",)),
            ("apple-proxy", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("duckduckbot", ("ipv4_merged.txt",)),
            ("openai", ("ipv4_merged.txt",)),
            ("perplexity", ("ipv4_merged.txt",)),
            ("facebook", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("twitter", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("telegram", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("pingdom", ("ipv4_merged.txt", "ipv6_merged.txt")),
            ("statuscake", ("ipv4_merged.txt",)),
        )
        for name in names
    ),
    (f"{_X4BNET}/datacenter/ipv4.txt", "x4bnet/datacenter/ipv4.txt"),
    (f"{_X4BNET}/datacenter/ipv6.txt", "x4bnet/datacenter/ipv6.txt"),
    (f"{_X4BNET}/vpn/ipv4.txt", "x4bnet/vpn/ipv4.txt"),
    (f"{_X4BNET}/vpn/ipv6.txt", "x4bnet/vpn/ipv6.txt"),
)

MAX_FEED_BYTES = 64 * 1024 * 1024  # the largest feed (AWS) is ~3 MB; anything huge is not a feed


class FeedDownloadError(RuntimeError):
    """A feed could not be downloaded; the message names the URL and says what to do instead."""


def download_feeds(
    folder: Path, timeout: float = 20.0, feeds: tuple[tuple[str, str], ...] = FEEDS,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download every feed into `folder`; stop at the first failure with a FeedDownloadError."""
    written = []
    for url, name in feeds:
        if progress is not None:
            progress(url)
        request = urllib.request.Request(url, headers={"User-Agent": "shieldware-geoip-update"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read(MAX_FEED_BYTES + 1)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FeedDownloadError(
                f"cannot download {url}: {reason}. This machine seems to have no internet access (or the "
                "feed moved). Nothing was changed. Fetch the feeds on a machine that has access and run "
                "`shieldware geoip build --from DIR` here."
            ) from exc
        if len(body) > MAX_FEED_BYTES:
            raise FeedDownloadError(f"{url}: answered more than {MAX_FEED_BYTES} bytes; not a range feed")
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        written.append(path)
    return written
