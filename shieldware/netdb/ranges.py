"""Range lists: read provider feeds (JSON or text, any folder layout) and the compact lists geoip/ ships.

A compact list is one text file per provider: a `# shieldware range list` header naming provider, kind,
source and licence, then one collapsed CIDR per line. Feeds are recognised by file name (see
`catalogue.PROVIDERS`), so `--from DIR` accepts the upstream repositories as cloned, the official
JSON files as downloaded, or a folder of compact lists.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shieldware.netdb.catalogue import PROVIDERS, PROVIDERS_BY_NAME, Provider

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
COMPACT_MARK = "# shieldware range list"
# JSON keys under which the feeds we read keep their CIDRs (AWS, Google, OCI, Linode, Hetzner, Bing, OpenAI).
_CIDR_KEYS = frozenset({"ip_prefix", "ipv6_prefix", "ipv4Prefix", "ipv6Prefix", "cidr", "prefix",
                        "IPv4Prefixes", "IPv6Prefixes"})


class RangeFeedError(ValueError):
    """A feed file could not be read; the message names the file."""


@dataclass
class RangeList:
    provider: Provider
    networks: list[IPNetwork] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped: int = 0  # lines or values that were not CIDRs

    def collapsed(self) -> list[IPNetwork]:
        """The networks merged into the fewest CIDRs, with special-purpose address space cut out."""
        v4 = [n for n in self.networks if n.version == 4]
        v6 = [n for n in self.networks if n.version == 6]
        return [*without_special(ipaddress.collapse_addresses(v4)),
                *without_special(ipaddress.collapse_addresses(v6))]


# Special-purpose blocks (IANA registries: private, shared, loopback, link-local, documentation,
# benchmarking, multicast, reserved). No provider's traffic comes from them; upstream lists that
# include them (one ships the documentation ranges) would tag test and internal addresses.
SPECIAL_PURPOSE = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/3",
    "::/8", "64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8",
))


def without_special(networks: Iterable[IPNetwork]) -> Iterator[IPNetwork]:
    for network in networks:
        parts = [network]
        for special in SPECIAL_PURPOSE:
            if special.version != network.version:
                continue
            kept = []
            for part in parts:
                if not part.overlaps(special):
                    kept.append(part)
                elif not part.subnet_of(special):  # a wider range holding a special block: cut it out
                    kept.extend(part.address_exclude(special))
            parts = kept
        yield from sorted(parts)


def parse_network(text: str) -> IPNetwork | None:
    text = text.strip()
    if not text or ("/" not in text and not text[0].isdigit() and ":" not in text):
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _json_cidrs(node: object, out: list[str], under_key: bool = False) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _json_cidrs(value, out, key in _CIDR_KEYS)
    elif isinstance(node, list):
        for value in node:
            _json_cidrs(value, out, under_key)
    elif isinstance(node, str) and under_key:
        out.append(node)


def read_feed_file(path: Path) -> tuple[list[IPNetwork], int]:
    """The networks in one feed file and how many entries were skipped as not-a-network."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise RangeFeedError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    if path.suffix == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RangeFeedError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        candidates: list[str] = []
        _json_cidrs(document, candidates)
    else:
        # One CIDR per line; CSV geofeeds (Linode, DigitalOcean) carry it in the first column.
        candidates = [line.split(",", 1)[0].split("#", 1)[0] for line in text.splitlines()]
        candidates = [c for c in candidates if c.strip()]
    networks = [n for n in map(parse_network, candidates) if n is not None]
    return networks, len(candidates) - len(networks)


def _compact_header(path: Path) -> dict[str, str] | None:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
            if not first.startswith(COMPACT_MARK):
                return None
            header = {}
            for line in handle:
                if not line.startswith("#"):
                    break
                key, sep, value = line[1:].partition(":")
                if sep:
                    header[key.strip()] = value.strip()
            return header
    except OSError:
        return None


def provider_of(path: Path, root: Path) -> Provider | None:
    """Which provider a feed file belongs to, from its name (and its folder's name)."""
    if path.suffix == ".txt":
        header = _compact_header(path)
        if header is not None:
            return PROVIDERS_BY_NAME.get(header.get("provider", ""))
    parts = path.relative_to(root).parts
    tail = "/".join(parts[-2:])
    for provider in PROVIDERS:
        for pattern in provider.feeds:
            target = tail if "/" in pattern else parts[-1]
            if fnmatch.fnmatchcase(target, pattern):
                return provider
    return None


def read_feeds(root: Path) -> dict[str, RangeList]:
    """Every recognised feed under `root`, merged per provider."""
    if not root.is_dir():
        raise RangeFeedError(f"{root}: not a folder of range feeds")
    lists: dict[str, RangeList] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".txt", ".csv")):
        provider = provider_of(path, root)
        if provider is None:
            continue
        networks, skipped = read_feed_file(path)
        entry = lists.setdefault(provider.name, RangeList(provider))
        entry.networks.extend(networks)
        entry.skipped += skipped
        entry.files.append(str(path.relative_to(root)))
    return lists


def write_compact(range_list: RangeList, folder: Path) -> Path:
    provider = range_list.provider
    networks = range_list.collapsed()
    lines = [
        COMPACT_MARK,
        f"# provider: {provider.name}",
        f"# kind: {provider.kind}",
        f"# source: {provider.source}",
        f"# licence: {provider.licence}",
        f"# aggregated: {'yes' if provider.aggregated else 'no'}",
        f"# networks: {len(networks)}",
        *(str(n) for n in networks),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{provider.name}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_compact_lists(lists: Iterable[RangeList], folder: Path) -> list[Path]:
    written = [write_compact(entry, folder) for entry in lists if entry.networks]
    keep = {p.name for p in written}
    for stale in folder.glob("*.txt"):  # a provider that vanished upstream must not linger
        if stale.name not in keep and _compact_header(stale) is not None:
            stale.unlink()
    return written


def iter_networks(lists: Iterable[RangeList]) -> Iterator[tuple[Provider, IPNetwork]]:
    for entry in lists:
        for network in entry.networks:
            yield entry.provider, network
