"""Build the hosting database: provider range lists → disjoint tagged ranges → one .mmdb (mmdb-writer).

Overlaps are resolved before anything is written, by a sweep over range boundaries: every stretch
of addresses gets the record of the most telling list covering it (see `catalogue`), so the written
tree has no overlapping inserts and the result does not depend on insertion order.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPNetwork as NetaddrNetwork
from netaddr import IPSet

from shieldware.netdb.catalogue import Provider
from shieldware.netdb.ranges import RangeList

DATABASE_TYPE = "shieldware-Hosting"


@dataclass(frozen=True, slots=True)
class BuildReport:
    path: Path
    providers: dict[str, int]  # provider → collapsed networks in its list
    tagged_ranges: int  # disjoint CIDRs written
    size_bytes: int


def range_to_cidrs(first: int, last: int, bits: int) -> list[tuple[int, int]]:
    """Split the inclusive integer range [first, last] into (network, prefix length) blocks."""
    out = []
    while first <= last:
        # The largest aligned block starting at `first` that does not run past `last`.
        size = (first & -first).bit_length() - 1 if first else bits
        while size > 0 and first + (1 << size) - 1 > last:
            size -= 1
        out.append((first, bits - size))
        first += 1 << size
    return out


def _winner(active: Counter) -> tuple[Provider, int] | None:
    best = None
    for (provider, prefixlen), count in active.items():
        if count <= 0:
            continue
        key = (*provider.rank, prefixlen, provider.name)
        if best is None or key > best[0]:
            best = (key, provider, prefixlen)
    return None if best is None else (best[1], best[2])


def disjoint_ranges(lists: Iterable[RangeList], version: int) -> list[tuple[int, int, Provider]]:
    """Sweep all networks of one IP version into disjoint [first, last] ranges, each with its winner.

    Adjacent ranges with the same winning provider are merged.
    """
    events: list[tuple[int, int, Provider, int]] = []  # (position, +1 open / -1 close, provider, prefixlen)
    for entry in lists:
        for network in entry.collapsed():
            if network.version != version:
                continue
            first = int(network.network_address)
            events.append((first, 1, entry.provider, network.prefixlen))
            events.append((first + network.num_addresses, -1, entry.provider, network.prefixlen))
    events.sort(key=lambda e: e[0])
    active: Counter = Counter()
    out: list[tuple[int, int, Provider]] = []
    i = 0
    while i < len(events):
        position = events[i][0]
        while i < len(events) and events[i][0] == position:
            _, delta, provider, prefixlen = events[i]
            active[(provider, prefixlen)] += delta
            if active[(provider, prefixlen)] == 0:
                del active[(provider, prefixlen)]
            i += 1
        if i == len(events):
            break
        winner = _winner(active)
        if winner is None:
            continue
        last = events[i][0] - 1
        provider = winner[0]
        if out and out[-1][2] is provider and out[-1][1] + 1 == position:
            out[-1] = (out[-1][0], last, provider)
        else:
            out.append((position, last, provider))
    return out


def record_for(provider: Provider) -> dict[str, str]:
    """What the database says about an address: small on purpose (one record per provider)."""
    return {"provider": provider.name, "kind": provider.kind, "source": provider.source}


class _ReproducibleWriter(MMDBWriter):
    """mmdb-writer stamps the wall clock into the metadata; a given epoch keeps rebuilds byte-identical.

    The epoch must not be 0: libmaxminddb (the C reader) refuses such a file as invalid.
    """

    def __init__(self, build_epoch: int, **options: object) -> None:
        super().__init__(**options)
        self._build_epoch = build_epoch

    def _build_meta(self) -> dict:
        meta = super()._build_meta()
        meta["build_epoch"] = self._build_epoch
        return meta


def default_build_epoch() -> int:
    """SOURCE_DATE_EPOCH when set (the reproducible-builds convention), else now."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(text) if text.isdigit() and int(text) > 0 else int(time.time())


def build_database(lists: Iterable[RangeList], out: Path, build_epoch: int | None = None) -> BuildReport:
    """Write the hosting .mmdb for `lists` to `out` (atomically: a reader never sees half a file)."""
    lists = [entry for entry in lists if entry.networks]
    build_epoch = build_epoch if build_epoch and build_epoch > 0 else default_build_epoch()
    writer = _ReproducibleWriter(
        build_epoch,
        ip_version=6,
        ipv4_compatible=True,
        database_type=DATABASE_TYPE,
        languages=["en"],
        description={"en": "shieldware hosting, VPN, relay and crawler ranges (see geoip/README.md)"},
    )
    by_provider: dict[str, list[NetaddrNetwork]] = {}
    providers: dict[str, Provider] = {}
    for version, bits in ((4, 32), (6, 128)):
        for first, last, provider in disjoint_ranges(lists, version):
            blocks = by_provider.setdefault(provider.name, [])
            providers[provider.name] = provider
            for network, prefixlen in range_to_cidrs(first, last, bits):
                blocks.append(NetaddrNetwork((network, prefixlen), version=version))
    tagged = 0
    for name in sorted(by_provider):
        blocks = by_provider[name]
        tagged += len(blocks)
        writer.insert_network(IPSet(blocks), record_for(providers[name]))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    writer.to_db_file(str(partial))
    partial.replace(out)
    return BuildReport(
        path=out,
        providers={entry.provider.name: len(entry.collapsed()) for entry in lists},
        tagged_ranges=tagged,
        size_bytes=out.stat().st_size,
    )
