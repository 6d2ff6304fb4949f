"""The shipped hosting database: provider addresses carry their name and kind; home lines carry nothing."""

from __future__ import annotations

import bisect
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import maxminddb
import pytest

from shieldware.netdb.build import range_to_cidrs
from shieldware.netdb.catalogue import PROVIDERS
from shieldware.netdb.lookup import NetworkLookup
from shieldware.netdb.paths import shipped_database, shipped_ranges_dir
from shieldware.netdb.ranges import RangeList
from shieldware.netdb.readers import open_database

UPSTREAM = Path("/work/shared/data/ip-ranges")
# Consumer broadband and mobile lines (Comcast, BT, Deutsche Telekom, Orange, Verizon Wireless, Comcast v6).
RESIDENTIAL = ("73.15.20.1", "86.128.44.7", "79.192.10.20", "90.12.34.56", "174.192.5.9", "2601:646:8d00::1")


def _compact_lists() -> dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """Read geoip/ranges/*.txt directly (not through the builder's reader)."""
    lists = {}
    for path in sorted(shipped_ranges_dir().glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        header = dict(line[1:].split(":", 1) for line in lines if line.startswith("# ") and ":" in line)
        provider = header[" provider"].strip() if " provider" in header else header["provider"].strip()
        lists[provider] = [ipaddress.ip_network(line) for line in lines if line and not line.startswith("#")]
    return lists


class _Intervals:
    """Membership test over one provider's networks by bisection (independent of the builder's sweep)."""

    def __init__(self, networks):
        spans = sorted((int(n.network_address), int(n.broadcast_address), n.version) for n in networks)
        self.spans = {v: [(a, b) for a, b, ver in spans if ver == v] for v in (4, 6)}
        self.starts = {v: [a for a, _ in self.spans[v]] for v in (4, 6)}

    def size_of_range_holding(self, address) -> int | None:
        value, version = int(address), address.version
        i = bisect.bisect_right(self.starts[version], value) - 1
        # Lists are collapsed, so spans do not overlap: the one starting at or before the address decides.
        if i < 0 or self.spans[version][i][1] < value:
            return None
        first, last = self.spans[version][i]
        return last - first + 1

    def __contains__(self, address) -> bool:
        return self.size_of_range_holding(address) is not None


def _outranks(other_rank, other_size, own_rank, own_size) -> bool:
    if other_size is None:
        return False
    return other_rank > own_rank or (other_rank == own_rank and other_size <= own_size)


@pytest.fixture(scope="module")
def lists():
    return _compact_lists()


@pytest.fixture(scope="module")
def lookup():
    return NetworkLookup([open_database(shipped_database())])


def test_every_catalogued_provider_ships_a_list(lists):
    assert set(lists) == {p.name for p in PROVIDERS}
    assert all(lists.values())


def test_shipped_files_stay_small():
    for path in [shipped_database(), *shipped_ranges_dir().glob("*.txt")]:
        assert path.stat().st_size < 5 * 1024 * 1024, path


def test_an_address_of_each_provider_is_tagged_with_that_provider_and_kind(lists, lookup):
    kinds = {p.name: p.kind for p in PROVIDERS}
    # Kind first (crawler > relay > vpn > hosting), then a named provider over an aggregated list.
    rank = {p.name: ({"crawler": 4, "relay": 3, "vpn": 2, "hosting": 1}[p.kind], not p.aggregated)
            for p in PROVIDERS}
    members = {name: _Intervals(nets) for name, nets in lists.items()}
    for name, networks in lists.items():
        checked = 0
        for network in networks:
            # Addresses where every other list holding them ranks lower (or equal, with a wider range):
            # the tag must be this provider's. For most providers: addresses in no other list at all.
            for address in (network.network_address, network.network_address + network.num_addresses // 2):
                if any(_outranks(rank[other], members[other].size_of_range_holding(address),
                                 rank[name], network.num_addresses)
                       for other in members if other != name):
                    continue
                facts = lookup.facts(str(address))
                assert (facts.provider, facts.kind) == (name, kinds[name]), (name, str(address))
                checked += 1
            if checked >= 3:
                break
        assert checked, f"no address of {name} outside every other list"


@pytest.mark.parametrize("ip,provider,kind", [
    ("66.249.66.1", "googlebot", "crawler"),  # inside all-of-Google too: the crawler wins
    ("2001:4860:4801:10::1", "googlebot", "crawler"),
    ("34.1.208.1", "gcp", "hosting"),  # GCP is also in goog.json: the narrower, named range wins
    ("8.8.8.8", "google", "hosting"),
    ("3.5.140.1", "aws", "hosting"),
    ("::ffff:3.5.140.1", "aws", "hosting"),  # IPv4-mapped IPv6 is the IPv4 client
    ("2a01:4f8::1", "hetzner", "hosting"),
])
def test_precedence_and_address_forms(lookup, ip, provider, kind):
    facts = lookup.facts(ip)
    assert (facts.provider, facts.kind) == (provider, kind)
    assert facts.crawler == (provider if kind == "crawler" else None)


def test_crawler_addresses_inside_clouds_are_crawlers(lists, lookup):
    # OpenAI's crawlers run inside Azure: the address must say openai/crawler, not microsoft/hosting.
    microsoft = _Intervals(lists["microsoft"])
    inside = [n for n in lists["openai"] if n.network_address in microsoft]
    for network in inside[:5]:
        facts = lookup.facts(str(network.network_address))
        assert (facts.provider, facts.kind) == ("openai", "crawler")


@pytest.mark.parametrize("ip", RESIDENTIAL)
def test_residential_addresses_are_not_tagged(lists, lookup, ip):
    address = ipaddress.ip_address(ip)
    assert not any(address in _Intervals(nets) for nets in lists.values())  # the test's own premise
    facts = lookup.facts(ip)
    assert (facts.provider, facts.kind, facts.kinds) == (None, None, frozenset())


@pytest.mark.parametrize("ip", ["192.0.2.1", "198.51.100.7", "203.0.113.5", "2001:db8::1", "10.1.2.3",
                                "192.168.1.1", "127.0.0.1", "::1", "fe80::1", "100.64.0.1"])
def test_documentation_private_and_loopback_addresses_are_never_tagged(lists, lookup, ip):
    # One upstream list (vultr) carries the documentation ranges; the builder must cut them out.
    address = ipaddress.ip_address(ip)
    assert not any(address in _Intervals(nets) for nets in lists.values())
    assert lookup.facts(ip).kind is None


def test_special_purpose_space_is_cut_out_of_wider_ranges():
    wide = [ipaddress.ip_network("192.0.0.0/16"), ipaddress.ip_network("2001:db8::/31")]
    entry = RangeList(PROVIDERS[0], wide)
    kept = entry.collapsed()
    assert ipaddress.ip_network("192.0.3.0/24") in kept and ipaddress.ip_network("2001:db9::/32") in kept
    assert not any(n.overlaps(ipaddress.ip_network("192.0.2.0/24")) for n in kept if n.version == 4)
    assert not any(n.overlaps(ipaddress.ip_network("2001:db8::/32")) for n in kept if n.version == 6)
    # Everything but 192.0.0.0/24 and 192.0.2.0/24 stays.
    assert sum(n.num_addresses for n in kept if n.version == 4) == 2**16 - 2 * 256


def test_range_to_cidrs_covers_exactly_the_range():
    for first, last, bits in ((0, 2**32 - 1, 32), (5, 300, 32), (2**64, 2**64 + 2**20 + 7, 128), (9, 9, 32)):
        blocks = range_to_cidrs(first, last, bits)
        covered = sum(2 ** (bits - prefix) for _, prefix in blocks)
        assert covered == last - first + 1
        assert blocks[0][0] == first
        assert all(start % 2 ** (bits - prefix) == 0 for start, prefix in blocks)


def _geoip(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shieldware.cli", "geoip", *args],
                          capture_output=True, text=True, timeout=600, env=env)


def test_build_from_a_folder_of_compact_lists(tmp_path):
    ranges = tmp_path / "ranges"
    ranges.mkdir()
    for name in ("hetzner.txt", "googlebot.txt"):
        (ranges / name).write_text((shipped_ranges_dir() / name).read_text())
    out = tmp_path / "two.mmdb"
    done = _geoip("build", "--ranges", str(ranges), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "no ranges for" in done.stderr and "aws" in done.stderr  # says what will not be tagged
    lookup = NetworkLookup([open_database(out)])
    assert (lookup.facts("2a01:4f8::1").provider, lookup.facts("66.249.66.1").kind) == ("hetzner", "crawler")
    assert lookup.facts("3.5.140.1").kind is None


def test_the_shipped_lists_and_database_rebuild_byte_identical(tmp_path):
    """From the upstream snapshot when it is on this machine (lists and database), else from the
    shipped lists (database only): the shipped files are exactly what the builder makes."""
    with maxminddb.open_database(str(shipped_database())) as shipped:
        epoch = shipped.metadata().build_epoch
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    ranges, out = tmp_path / "ranges", tmp_path / "rebuilt.mmdb"
    if UPSTREAM.is_dir():
        done = _geoip("build", "--from", str(UPSTREAM), "--ranges", str(ranges), "--out", str(out), env=env)
    else:
        done = _geoip("build", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    if UPSTREAM.is_dir():
        for shipped_list in shipped_ranges_dir().glob("*.txt"):
            assert (ranges / shipped_list.name).read_text() == shipped_list.read_text(), shipped_list.name
    assert out.read_bytes() == shipped_database().read_bytes()
