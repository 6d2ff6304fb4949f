"""Catalogue walks across addresses, found in a log: product ids fetched in order by one user agent
from address after address (a scraper on rotating proxies), which no single address shows.

Live, `behav.distributed_walk` watches pages sent without the session cookie (signals/traffic.py).
A log does not say which cookies came, but it holds the whole day in order, so here every product
page counts and the walk is followed step by step. A page *links* to the latest page of the same
user agent whose id is one to `max_gap` below it, if that page is recent: within `link_seconds`,
and among that user agent's last `link_pages` product pages. Its *depth* is then one more than that
page's (else 1), and it joins that page's chain. A chain whose depth reaches `min_pages` and whose
links change address `min_address_changes` times (and for a share of them) is a walk. A client of
it carries the finding when the walk went on from one of its pages or ended there: a person who
landed on the id after a scraper's page joined the chain, but the scraper's next step links to its
own page.

Recency counts pages, not only seconds, because in a small busy shop every id was fetched by
someone a minute ago: linking to any of them would string people's random landings into long
paths. A scraper's next step comes while only a few other pages of its user agent came in
between, and people landing on ids at random rarely link for `min_pages` steps in a row. A
per-address walker is enumeration's (behaviour.py), not this.

State is bounded whatever the log's size: a hash table of recent pages (stale entries are free
slots), a counter per user agent, and a ring of chains. A chain that reaches `min_pages` is pinned
in its ring slot for the report; others are overwritten as new chains start. `link_walks` is the
Numba kernel, `link_walks_reference` its plain-Python twin (the tests hold them to each other).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from shieldware.evidence import reason_catalogue, register_reason

if "behav.distributed_walk" not in reason_catalogue():
    register_reason("behav.distributed_walk", 55, "Product pages in id order from one client software over "
                    "many addresses: a catalogue scraped through rotating proxies.")

TABLE_SLOTS = 1 << 18  # recent product pages (a busy shop: ~1,000 a second)
CHAIN_SLOTS = 1 << 17  # chains started and not yet overwritten
PROBES = 16  # table slots tried per page
PIN_SKIPS = 64  # pinned ring slots stepped over before a new chain overwrites one anyway

# Chain ring columns (int64): the chain's id (-1: free), pages, deepest page, links that changed
# address, first and last product id, user agent, pinned (1 once its depth reached min_pages), the
# client of its deepest page.
C_ID, C_PAGES, C_DEPTH, C_HOPS, C_FIRST_ID, C_LAST_ID, C_UA, C_PINNED, C_LAST_CLIENT = range(9)
N_CHAIN_INTS = 9
T_FIRST, T_LAST = 0, 1  # chain ring float columns: first and last time
# Table columns (int64): user agent (-1: free), product id, chain, ip, depth, the user agent's page
# count, client (-1: retired).
E_UA, E_PID, E_CHAIN, E_IP, E_DEPTH, E_SEQ, E_CLIENT = range(7)
N_ENTRY_INTS = 7


@dataclass(frozen=True)
class WalkSettings:
    min_pages: int = 50  # a path of this many linked pages is a walk candidate ...
    min_address_changes: int = 8  # ... and a walk when this many of its chain's links change address,
    min_hop_share: float = 0.1  # ... and at least this share (a one-address walker's chain is joined by
    # a few people landing on the id after its page now and then: that is enumeration's)
    link_seconds: float = 120.0  # the longest pause between two steps of a walk
    link_pages: int = 64  # ... and the most product pages of its user agent in between
    max_gap: int = 3  # a step may skip ids: up to this far below counts as the page before


@njit(cache=True, nogil=True)
def _slot_of(ua, pid, mask):
    h = np.uint64(pid) * np.uint64(0x9E3779B97F4A7C15) ^ np.uint64(ua) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= h >> np.uint64(29)
    return np.int64(h & np.uint64(mask))


@njit(cache=True, nogil=True)
def _recent(entries, times, s, now, seq, link_seconds, link_pages):
    return now - times[s] <= link_seconds and seq - entries[s, E_SEQ] <= link_pages


@njit(cache=True, nogil=True)
def _find(entries, times, ua, pid, now, seq, link_seconds, link_pages, mask):
    """The table slot of a recent page (ua, pid), or -1."""
    base = _slot_of(ua, pid, mask)
    for k in range(PROBES):
        s = (base + k) & mask
        if entries[s, E_UA] == ua and entries[s, E_PID] == pid:
            return s if _recent(entries, times, s, now, seq, link_seconds, link_pages) else -1
    return -1


@njit(cache=True, nogil=True)
def _slot_for(entries, times, ua, pid, now, link_seconds, mask):
    """Where (ua, pid) goes: its own slot, else a free or stale one, else the oldest probed."""
    base = _slot_of(ua, pid, mask)
    spare = -1
    for k in range(PROBES):
        s = (base + k) & mask
        if entries[s, E_UA] == ua and entries[s, E_PID] == pid:
            return s
        if spare < 0 and (entries[s, E_UA] < 0 or now - times[s] > link_seconds):
            spare = s
    if spare >= 0:
        return spare
    oldest = base
    for k in range(1, PROBES):
        s = (base + k) & mask
        if times[s] < times[oldest]:
            oldest = s
    return oldest


@njit(cache=True, nogil=True)
def link_walks(order, times, uas, ips, clients, pids, ua_seq, entries, entry_times, c_ints, c_floats,
               next_chain, client_chain, client_extended, min_pages, link_seconds, link_pages, max_gap):
    """Feed product pages (visited in `order`, time-sorted; pid < 0 skipped) into the table and the
    chain ring; `client_chain[client]` becomes the chain of the client's latest product page,
    `client_extended[client]` 1 once a page of it was linked to, `ua_seq[ua]` counts the user
    agent's product pages. Returns the next chain id."""
    mask = entries.shape[0] - 1
    ring = c_ints.shape[0]
    for j in range(order.shape[0]):
        i = order[j]
        pid = pids[i]
        if pid < 0:
            continue
        ua, ip, now = uas[i], ips[i], times[i]
        ua_seq[ua] += 1
        seq = ua_seq[ua]
        before = -1
        for gap in range(1, min(max_gap, pid) + 1):
            s = _find(entries, entry_times, ua, pid - gap, now, seq, link_seconds, link_pages, mask)
            if s >= 0 and (before < 0 or entry_times[s] > entry_times[before]):
                before = s
        chain = -1
        depth = 1
        if before >= 0 and c_ints[entries[before, E_CHAIN] % ring, C_ID] == entries[before, E_CHAIN]:
            chain = entries[before, E_CHAIN]  # (a chain overwritten in the ring: this page starts afresh)
            depth = entries[before, E_DEPTH] + 1
            slot = chain % ring
            c_ints[slot, C_PAGES] += 1
            if entries[before, E_IP] != ip:
                c_ints[slot, C_HOPS] += 1
            if entries[before, E_CLIENT] >= 0:
                client_extended[entries[before, E_CLIENT]] = 1
            if depth > c_ints[slot, C_DEPTH]:
                c_ints[slot, C_DEPTH] = depth
                c_ints[slot, C_LAST_ID] = pid
                c_ints[slot, C_LAST_CLIENT] = clients[i]
                c_floats[slot, T_LAST] = now
            if depth >= min_pages:
                c_ints[slot, C_PINNED] = 1
        else:
            for _ in range(PIN_SKIPS):
                if c_ints[next_chain % ring, C_PINNED] == 0:
                    break
                next_chain += 1
            chain = next_chain
            next_chain += 1
            slot = chain % ring
            c_ints[slot, C_ID] = chain
            c_ints[slot, C_PAGES] = 1
            c_ints[slot, C_DEPTH] = 1
            c_ints[slot, C_HOPS] = 0
            c_ints[slot, C_FIRST_ID] = pid
            c_ints[slot, C_LAST_ID] = pid
            c_ints[slot, C_UA] = ua
            c_ints[slot, C_PINNED] = 1 if min_pages <= 1 else 0
            c_ints[slot, C_LAST_CLIENT] = clients[i]
            c_floats[slot, T_FIRST] = now
            c_floats[slot, T_LAST] = now
        s = _slot_for(entries, entry_times, ua, pid, now, link_seconds, mask)
        entries[s, E_UA] = ua
        entries[s, E_PID] = pid
        entries[s, E_CHAIN] = chain
        entries[s, E_IP] = ip
        entries[s, E_DEPTH] = depth
        entries[s, E_SEQ] = seq
        entries[s, E_CLIENT] = clients[i]
        entry_times[s] = now
        client_chain[clients[i]] = chain
    return next_chain


def link_walks_reference(pages: list[tuple[float, int, int, int, int]], settings: WalkSettings
                         ) -> tuple[list[dict[str, Any]], dict[int, int], set[int]]:
    """Plain-Python twin of `link_walks` without its bounds (every page remembered, no ring).

    `pages`: (time, user agent, ip, client, product id) in time order. Returns the chains as
    dicts (pages, depth, hops, first_id, last_id, ua, first, last, last_client), each client's
    latest chain, and the clients a page of which was linked to.
    """
    # (ua, pid) → time, seq, chain, ip, depth, client
    latest: dict[tuple[int, int], tuple[float, int, int, int, int, int]] = {}
    extended: set[int] = set()
    ua_seq: dict[int, int] = {}
    chains: list[dict[str, Any]] = []
    client_chain: dict[int, int] = {}
    for now, ua, ip, client, pid in pages:
        if pid < 0:
            continue
        seq = ua_seq[ua] = ua_seq.get(ua, 0) + 1
        before = None
        for gap in range(1, min(settings.max_gap, pid) + 1):
            entry = latest.get((ua, pid - gap))
            if (entry is not None and now - entry[0] <= settings.link_seconds
                    and seq - entry[1] <= settings.link_pages and (before is None or entry[0] > before[0])):
                before = entry
        if before is not None:
            _, _, chain, before_ip, before_depth, before_client = before
            depth = before_depth + 1
            extended.add(before_client)
            record = chains[chain]
            record["pages"] += 1
            record["hops"] += before_ip != ip
            if depth > record["depth"]:
                record["depth"], record["last_id"], record["last"], record["last_client"] = depth, pid, now, client
        else:
            chain, depth = len(chains), 1
            chains.append({"pages": 1, "depth": 1, "hops": 0, "first_id": pid, "last_id": pid, "ua": ua,
                           "first": now, "last": now, "last_client": client})
        latest[(ua, pid)] = (now, seq, chain, ip, depth, client)
        client_chain[client] = chain
    return chains, client_chain, extended


class WalkTracker:
    """The analysis's walk state: feed it each batch's product pages, ask it about clients."""

    def __init__(self, settings: WalkSettings | None = None, table_slots: int = TABLE_SLOTS,
                 chain_slots: int = CHAIN_SLOTS) -> None:
        if table_slots & (table_slots - 1):
            raise ValueError("table_slots must be a power of two")
        self.settings = settings or WalkSettings()
        self.entries = np.zeros((table_slots, N_ENTRY_INTS), dtype=np.int64)
        self.entries[:, E_UA] = -1
        self.entry_times = np.zeros(table_slots, dtype=np.float64)
        self.c_ints = np.zeros((chain_slots, N_CHAIN_INTS), dtype=np.int64)
        self.c_ints[:, C_ID] = -1
        self.c_floats = np.zeros((chain_slots, 2), dtype=np.float64)
        self.next_chain = 0
        self.ua_seq = np.zeros(1024, dtype=np.int64)
        self.client_chain = np.full(1024, -1, dtype=np.int64)
        self.client_extended = np.zeros(1024, dtype=np.int64)

    def feed(self, order: np.ndarray, times: np.ndarray, uas: np.ndarray, ips: np.ndarray,
             clients: np.ndarray, pids: np.ndarray) -> None:
        """One batch: `pids[i]` the product id of line i (-1: not a product page)."""
        self.client_chain = _grown(self.client_chain, clients, -1)
        self.client_extended = _grown(self.client_extended, clients, 0)
        self.ua_seq = _grown(self.ua_seq, uas, 0)
        s = self.settings
        self.next_chain = link_walks(order, times, uas.astype(np.int64), ips.astype(np.int64),
                                     clients.astype(np.int64), pids, self.ua_seq, self.entries, self.entry_times,
                                     self.c_ints, self.c_floats, self.next_chain, self.client_chain,
                                     self.client_extended, s.min_pages, s.link_seconds, s.link_pages, s.max_gap)

    def _walk_slot(self, chain: int) -> int | None:
        if chain < 0:
            return None
        slot = chain % self.c_ints.shape[0]
        row = self.c_ints[slot]
        if row[C_ID] != chain or not row[C_PINNED]:
            return None
        hops = row[C_HOPS]
        if hops < self.settings.min_address_changes or hops < self.settings.min_hop_share * max(row[C_PAGES] - 1, 1):
            return None
        return slot

    def finding(self, client: int, user_agents: list[str]) -> tuple[str, dict[str, Any]] | None:
        """The client's `behav.distributed_walk` finding, when its latest product page was part of a walk
        and the walk went on from a page of it (or ended there). A person who landed on the id after
        a scraper's page joined its chain, but the scraper's next step came from its own page."""
        if client >= self.client_chain.shape[0]:
            return None
        slot = self._walk_slot(int(self.client_chain[client]))
        if slot is None or not (self.client_extended[client] or self.c_ints[slot, C_LAST_CLIENT] == client):
            return None
        return "behav.distributed_walk", self._detail(slot, user_agents)

    def walks(self, user_agents: list[str]) -> list[dict[str, Any]]:
        """Every walk found so far, longest first."""
        pinned = np.flatnonzero(self.c_ints[:, C_PINNED] == 1)
        found = [self._detail(int(slot), user_agents) for slot in pinned.tolist()
                 if self._walk_slot(int(self.c_ints[slot, C_ID])) is not None]
        return sorted(found, key=lambda walk: -walk["walk_pages"])

    def _detail(self, slot: int, user_agents: list[str]) -> dict[str, Any]:
        row, times = self.c_ints[slot], self.c_floats[slot]
        return {"walk_pages": int(row[C_DEPTH]), "chain_pages": int(row[C_PAGES]),
                "address_changes": int(row[C_HOPS]), "first_id": int(row[C_FIRST_ID]),
                "last_id": int(row[C_LAST_ID]), "user_agent": user_agents[int(row[C_UA])],
                "first_seen": round(float(times[T_FIRST]), 3), "last_seen": round(float(times[T_LAST]), 3)}

    def keep_clients(self, live_clients: np.ndarray) -> None:
        """Clients renumbered (retired ones dropped), as the analysis renumbers its tables."""
        self.client_chain = _kept(self.client_chain, live_clients, -1)
        self.client_extended = _kept(self.client_extended, live_clients, 0)
        new_client = np.full(int(live_clients.max()) + 1 if live_clients.shape[0] else 0, -1, dtype=np.int64)
        new_client[live_clients] = np.arange(live_clients.shape[0])
        for column in (self.entries[:, E_CLIENT], self.c_ints[:, C_LAST_CLIENT]):
            known = (column >= 0) & (column < new_client.shape[0])
            column[known] = new_client[column[known]]
            column[column >= new_client.shape[0]] = -1  # a retired client past the last one kept

    def renumber_ips(self, new_ip: np.ndarray) -> None:
        """Addresses renumbered: remembered pages follow (a retired address's pages are long stale)."""
        ips = self.entries[:, E_IP]
        known = (self.entries[:, E_UA] >= 0) & (ips >= 0) & (ips < new_ip.shape[0])
        self.entries[known, E_IP] = new_ip[ips[known]]


def _kept(array: np.ndarray, rows: np.ndarray, fill: int) -> np.ndarray:
    """`array`'s entries for `rows`, renumbered from 0, with room to grow."""
    kept = _grown(array, rows, fill)[rows]
    out = np.full(max(1024, 2 * kept.shape[0]), fill, dtype=array.dtype)
    out[:kept.shape[0]] = kept
    return out


def _grown(array: np.ndarray, ids: np.ndarray, fill: int) -> np.ndarray:
    """`array` long enough to be indexed by every id in `ids`."""
    if ids.shape[0] == 0 or int(ids.max()) < array.shape[0]:
        return array
    grown = np.full(max(int(ids.max()) + 1, 2 * array.shape[0]), fill, dtype=array.dtype)
    grown[:array.shape[0]] = array
    return grown
