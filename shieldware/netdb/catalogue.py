"""The providers the hosting database knows: name, kind, which feed files hold their ranges, licence.

Kinds, from most to least telling about the traffic:
  crawler  — a published crawler/fetcher/monitor range (googlebot, bingbot, openai, …). Never reported as
             hosting: a verified crawler from its own range is the crawler, not a rented server.
  relay    — a privacy relay used by ordinary people (iCloud Private Relay): known, but no evidence.
  vpn      — a VPN exit.
  hosting  — a cloud or datacenter network (bots rent servers; shoppers sit on home and mobile lines).

Where ranges overlap, the record of an address comes from the most telling kind, then a named provider
over an aggregated list, then the narrowest range (so GCP wins over "all of Google").
"""

from __future__ import annotations

from dataclasses import dataclass

KIND_RANK = {"crawler": 4, "relay": 3, "vpn": 2, "hosting": 1}


@dataclass(frozen=True, slots=True)
class Provider:
    """One tag of the hosting database. `feeds` are path patterns (the last one or two components of
    a file path, fnmatch style) of the upstream files that hold this provider's ranges."""

    name: str
    kind: str
    feeds: tuple[str, ...]
    source: str
    licence: str
    aggregated: bool = False  # a list of many networks whose operator it does not name

    @property
    def rank(self) -> tuple[int, int]:
        return KIND_RANK[self.kind], 0 if self.aggregated else 1


_JH = "jonhadfield/cloud-ips"
_LA = "lord-alfred/ipranges"
_X4 = "X4BNet/lists_vpn"
_APACHE, _CC0, _MIT = "Apache-2.0", "CC0-1.0", "MIT"


def _la(folder: str) -> tuple[str, ...]:
    """lord-alfred/ipranges keeps one folder per list with ipv4[_merged].txt and ipv6[_merged].txt."""
    return (f"{folder}/ipv4*.txt", f"{folder}/ipv6*.txt")


PROVIDERS: tuple[Provider, ...] = (
    # hosting: clouds and hosters
    Provider("aws", "hosting", ("aws.json", "ip-ranges.json", *_la("amazon")),
             f"{_JH} aws.json (AWS ip-ranges.json) + {_LA} amazon/", f"{_APACHE} + {_CC0}"),
    Provider("gcp", "hosting", ("gcp.json", "cloud.json"),
             f"{_JH} gcp.json (Google Cloud cloud.json)", _APACHE),
    Provider("google", "hosting", ("google.json", "goog.json", *_la("google")),
             f"{_JH} google.json (Google goog.json) + {_LA} google/", f"{_APACHE} + {_CC0}"),
    Provider("microsoft", "hosting", _la("microsoft"), f"{_LA} microsoft/ (Azure and Microsoft)", _CC0),
    Provider("oracle", "hosting", ("oci.json", "public_ip_ranges.json", *_la("oracle")),
             f"{_JH} oci.json (OCI public_ip_ranges.json) + {_LA} oracle/", f"{_APACHE} + {_CC0}"),
    Provider("linode", "hosting", ("linode.json", *_la("linode")), f"{_JH} linode.json + {_LA} linode/",
             f"{_APACHE} + {_CC0}"),
    Provider("hetzner", "hosting", ("hetzner.json",), f"{_JH} hetzner.json", _APACHE),
    Provider("ovh", "hosting", ("ovh.json",), f"{_JH} ovh.json", _APACHE),
    Provider("digitalocean", "hosting", _la("digitalocean"), f"{_LA} digitalocean/", _CC0),
    Provider("vultr", "hosting", _la("vultr"), f"{_LA} vultr/", _CC0),
    Provider("cloudflare", "hosting", _la("cloudflare"), f"{_LA} cloudflare/", _CC0),
    Provider("github", "hosting", _la("github"), f"{_LA} github/", _CC0),
    Provider("x4bnet-datacenter", "hosting", ("datacenter/ipv4.txt", "datacenter/ipv6.txt"),
             f"{_X4} output/datacenter/ (aggregated datacenter and VPN networks)", _MIT, aggregated=True),
    # vpn
    Provider("protonvpn", "vpn", _la("protonvpn"), f"{_LA} protonvpn/", _CC0),
    Provider("x4bnet-vpn", "vpn", ("vpn/ipv4.txt", "vpn/ipv6.txt"), f"{_X4} output/vpn/ (known VPN networks)",
             _MIT, aggregated=True),
    # relay: real people behind a privacy relay
    Provider("apple-private-relay", "relay", _la("apple-proxy"),
             f"{_LA} apple-proxy/ (iCloud Private Relay egress)",
             _CC0),
    # crawlers, fetchers and monitors with published ranges
    Provider("googlebot", "crawler", ("googlebot.json", *_la("googlebot")),
             f"{_JH} googlebot.json + {_LA} googlebot/", f"{_APACHE} + {_CC0}"),
    Provider("google-special-crawlers", "crawler", ("googlesc.json", "special-crawlers.json"),
             f"{_JH} googlesc.json (Google special-case crawlers)", _APACHE),
    Provider("google-user-fetchers", "crawler", ("googleutf.json", "user-triggered-fetchers*.json"),
             f"{_JH} googleutf.json (Google user-triggered fetchers)", _APACHE),
    Provider("bingbot", "crawler", ("bingbot.json", *_la("bing")), f"{_LA} bing/", _CC0),
    Provider("duckduckbot", "crawler", (*_la("duckduckbot"), *_la("duckassistbot")),
             f"{_LA} duckduckbot/ + duckassistbot/", _CC0),
    Provider("openai", "crawler", _la("openai"),
             f"{_LA} openai/ (GPTBot, ChatGPT-User, OAI-SearchBot)", _CC0),
    Provider("perplexity", "crawler", _la("perplexity"), f"{_LA} perplexity/", _CC0),
    Provider("facebook", "crawler", _la("facebook"),
             f"{_LA} facebook/ (Meta link-preview and AI crawlers)", _CC0),
    Provider("twitter", "crawler", _la("twitter"), f"{_LA} twitter/ (Twitterbot link previews)", _CC0),
    Provider("telegram", "crawler", _la("telegram"), f"{_LA} telegram/ (TelegramBot link previews)", _CC0),
    Provider("pingdom", "crawler", _la("pingdom"), f"{_LA} pingdom/ (uptime monitor)", _CC0),
    Provider("statuscake", "crawler", _la("statuscake"), f"{_LA} statuscake/ (uptime monitor)", _CC0),
)

PROVIDERS_BY_NAME = {p.name: p for p in PROVIDERS}
