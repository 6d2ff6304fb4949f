"""Catalogue walks across addresses in a log (shieldware/analyze/walks.py): kernel, bounds, the analyzer."""

from __future__ import annotations

import io
import ipaddress
import json
import random

import numpy as np
import pytest
from rich.console import Console

from shieldware.analyze.export import report_document
from shieldware.analyze.html import render_html
from shieldware.analyze.pipeline import analyze_sources
from shieldware.analyze.summary import print_summary
from shieldware.analyze.walks import (
    C_DEPTH,
    C_FIRST_ID,
    C_HOPS,
    C_ID,
    C_LAST_CLIENT,
    C_LAST_ID,
    C_PAGES,
    C_PINNED,
    C_UA,
    T_FIRST,
    T_LAST,
    WalkSettings,
    WalkTracker,
    link_walks_reference,
)


def mixed_pages(seed: int, count: int = 6000) -> list[tuple[float, int, int, int, int]]:
    """(time, ua, ip, client, product id): people on random ids in four user agents, and two walkers
    (one rotating its address on every page, skipping an id now and then; one on a single address)."""
    rng = random.Random(seed)
    pages, t, rotating_id, fixed_id = [], 0.0, 40, 500
    for n in range(count):
        t += rng.expovariate(4.0)
        roll = rng.random()
        if roll < 0.15:
            rotating_id += rng.choice((1, 1, 1, 2, 3))
            ip = 10_000 + n
            pages.append((t, 0, ip, ip, rotating_id))
        elif roll < 0.22:
            fixed_id += 1
            pages.append((t, 1, 7, 7, fixed_id))
        else:
            ip = 20_000 + rng.randrange(3000)
            pages.append((t, rng.randrange(4), ip, ip, rng.randrange(1, 900)))
    return pages


def feed(tracker: WalkTracker, pages: list[tuple[float, int, int, int, int]], batches: int = 3) -> None:
    columns = [np.array(c) for c in zip(*pages, strict=True)]
    times = columns[0].astype(np.float64)
    uas, ips, clients, pids = (c.astype(np.int64) for c in columns[1:])
    for part in np.array_split(np.arange(len(pages)), batches):  # state carries over from batch to batch
        local = np.arange(part.shape[0])
        tracker.feed(local, times[part], uas[part], ips[part], clients[part], pids[part])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_kernel_links_pages_as_its_python_reference_does(seed):
    pages = mixed_pages(seed)
    settings = WalkSettings()
    tracker = WalkTracker(settings)
    feed(tracker, pages)
    chains, client_chain, extended = link_walks_reference(pages, settings)
    assert tracker.next_chain == len(chains)
    for index, expected in enumerate(chains):
        row, times = tracker.c_ints[index], tracker.c_floats[index]
        got = {"pages": row[C_PAGES], "depth": row[C_DEPTH], "hops": row[C_HOPS], "first_id": row[C_FIRST_ID],
               "last_id": row[C_LAST_ID], "ua": row[C_UA], "first": times[T_FIRST], "last": times[T_LAST],
               "last_client": row[C_LAST_CLIENT]}
        assert row[C_ID] == index and got == expected, index
        assert row[C_PINNED] == (expected["depth"] >= settings.min_pages)
    for client, chain in client_chain.items():
        assert tracker.client_chain[client] == chain
        assert tracker.client_extended[client] == (client in extended)
    deepest = max(chains, key=lambda c: c["depth"])
    assert deepest["ua"] == 0 and deepest["depth"] > 400  # the rotating walker, through its skips


def test_walks_need_address_changes_people_and_single_address_walkers_are_not_walks():
    tracker = WalkTracker()
    feed(tracker, mixed_pages(4))
    walks = tracker.walks(["rotating", "one-address", "c", "d"])
    assert [w["user_agent"] for w in walks] == ["rotating"]
    (walk,) = walks
    assert walk["walk_pages"] > 400 and walk["address_changes"] >= walk["chain_pages"] - 5
    assert walk["first_id"] <= 45 and walk["last_id"] > walk["first_id"] + 500
    # The one-address walker's chain is just as deep: it is told apart by its address changes.
    one_address = [row for row in tracker.c_ints if row[C_UA] == 1 and row[C_PINNED]]
    assert one_address and all(row[C_HOPS] < 0.1 * row[C_PAGES] for row in one_address)


def test_a_page_links_only_to_recent_pages_of_its_user_agent():
    settings = WalkSettings(min_pages=3, link_seconds=10.0, link_pages=2, max_gap=1)
    steps = [(0.0, 0, 1, 1, 10), (1.0, 0, 2, 2, 11),
             (30.0, 0, 3, 3, 12),                              # too late: starts afresh
             (31.0, 1, 4, 4, 13),                              # another user agent: its own chain
             (32.0, 0, 5, 5, 500), (32.5, 0, 6, 6, 600), (33.0, 0, 7, 7, 700),
             (34.0, 0, 8, 8, 13)]                              # three pages of its agent since id 12
    chains, clients, _ = link_walks_reference(steps, settings)
    tracker = WalkTracker(settings)
    feed(tracker, steps, batches=2)
    assert [c["depth"] for c in chains] == [2, 1, 1, 1, 1, 1, 1]
    assert tracker.next_chain == len(chains) and clients[2] == 0 and clients[8] == 6
    assert tracker.c_ints[0, C_DEPTH] == 2 and tracker.client_chain[8] == 6


def test_a_person_landing_just_after_the_scraper_does_not_carry_its_walk():
    # The scraper (user agent 0) walks ids 100-179 from a new address each page; now and then a
    # person in the same user agent lands on the id the scraper will fetch next, just before it.
    pages, people = [], []
    for n in range(80):
        t = float(n)
        if n % 10 == 5:
            person = 5000 + n
            people.append(person)
            pages.append((t - 0.5, 0, person, person, 100 + n))
        pages.append((t, 0, n, n, 100 + n))
    tracker = WalkTracker(WalkSettings(min_pages=20))
    feed(tracker, pages, batches=2)
    ua = ["Chrome"]
    assert all(tracker.finding(n, ua) for n in range(80))  # its last page too: the walk ended there
    assert not any(tracker.finding(person, ua) for person in people)
    (walk,) = tracker.walks(ua)
    assert walk["walk_pages"] == 80


def test_pages_of_retired_clients_mark_no_one_when_a_walk_goes_on_from_them():
    tracker = WalkTracker(WalkSettings(min_pages=5, min_address_changes=2))
    feed(tracker, [(float(n), 0, n, n, 10 + n) for n in range(6)], batches=1)
    tracker.keep_clients(np.array([3, 4, 5]))  # clients 0-2 retire; 3-5 become 0-2
    assert tracker.client_extended[:3].tolist() == [1, 1, 0]
    feed(tracker, [(6.0, 0, 50, 3, 16), (6.5, 0, 51, 4, 12)], batches=1)  # 12 goes on from retired 11
    assert tracker.client_extended[:5].tolist() == [1, 1, 1, 0, 0]
    assert not tracker.client_extended[5:].any()


def test_bounds_hold_a_small_table_and_ring_forget_old_chains_but_keep_walks():
    settings = WalkSettings(min_pages=20, min_address_changes=3)
    tracker = WalkTracker(settings, table_slots=256, chain_slots=256)
    pages = mixed_pages(5, 3000)
    feed(tracker, pages, batches=5)
    assert tracker.next_chain > 5 * 256  # the ring went round many times ...
    pinned = tracker.c_ints[tracker.c_ints[:, C_PINNED] == 1]
    assert len(pinned) and (pinned[:, C_DEPTH] >= 20).all()  # ... and never overwrote a walk
    walks = tracker.walks(["rotating", "one-address", "c", "d"])
    assert walks and walks[0]["user_agent"] == "rotating"
    with pytest.raises(ValueError, match="power of two"):
        WalkTracker(table_slots=100)


def residential(n: int) -> str:
    return str(ipaddress.ip_address("86.150.0.0") + 300 + n * 7)


def shop_log(make_logs, tmp_path, per_address: int = 1, retire: bool = False):
    """An hour of people (five browsers) and a Chrome scraper walking ids 300-799 at one page a
    second, on a new residential address every `per_address` pages."""
    rng = random.Random(9)
    events, scraper = [], set()
    for n in range(1500):
        ip = str(ipaddress.ip_address("91.64.0.0") + 256 + n)
        events += make_logs._browser_visit(rng, ip, make_logs.BROWSERS[n % 5], make_logs.START + rng.uniform(0, 3600),
                                           catalogue=2000)
    t = make_logs.START + 60
    for n in range(500):
        ip = residential(n // per_address)
        scraper.add(ip)
        t += rng.uniform(0.5, 1.5)
        events.append(make_logs.Event(t, ip, "GET", f"/product/{300 + n}", 200, 9000, "", make_logs.CHROME))
    events.sort(key=lambda e: e.time)
    path = tmp_path / "access.log"
    path.write_text("\n".join(make_logs.render_combined(e) for e in events) + "\n")
    options = {"live_clients": 200, "idle_seconds": 300.0, "chunk_bytes": 1 << 15} if retire else {}
    return analyze_sources([str(path)], "combined", **options), scraper


@pytest.mark.parametrize("retire", [False, True], ids=["all at the end", "retired as they go idle"])
def test_the_analyzer_finds_a_walk_through_rotating_addresses(make_logs, tmp_path, retire):
    result, scraper = shop_log(make_logs, tmp_path, retire=retire)
    walked = {f.ip for f in result.clients if "behav.distributed_walk" in f.reason_codes}
    assert len(walked & scraper) >= 495
    # A person who landed on the id after the scraper's page joined its chain, but the walk went on
    # from the scraper's own page: only one whose page the walk went on from carries it.
    assert len(walked - scraper) <= 1
    by_ip = {f.ip: f for f in result.ips}
    sample = by_ip[residential(250)]
    assert sample.category == "suspicious" and sample.verdict == "challenge"  # as live: not blocked
    detail = next(e for e in sample.reasons if e.code == "behav.distributed_walk").detail
    assert detail["user_agent"] == make_logs.CHROME and detail["walk_pages"] >= 495
    (walk,) = result.walks
    assert walk["first_id"] == 300 and walk["last_id"] == 799 and walk["address_changes"] >= 495
    assert walk["addresses"] == len(walked)  # every address whose client carries it, people included
    document = json.loads(json.dumps(report_document(result), default=str))
    assert document["walks"][0]["walk_pages"] == walk["walk_pages"]
    assert document["walks"][0]["first_seen"].startswith("2026-11-20T")
    assert "Catalogue walks across addresses" in render_html(result) and "300 → 799" in render_html(result)
    console = Console(file=io.StringIO(), width=200)
    print_summary(result, console)
    assert "Catalogue walks across addresses" in console.file.getvalue()


def test_a_walk_names_the_networks_its_addresses_came_from(make_logs, tmp_path):
    # Addresses of a cloud network the shipped hosting database lists (as rotating datacenter proxies).
    rng, events = random.Random(3), []
    for n in range(300):
        ip = f"34.102.{n // 200}.{n % 200 + 1}"
        events.append(make_logs.Event(make_logs.START + n * 0.9 + rng.random() * 0.3, ip, "GET", f"/product/{40 + n}",
                                      200, 9000, "", make_logs.FIREFOX))
    path = tmp_path / "access.log"
    path.write_text("\n".join(make_logs.render_combined(e) for e in events) + "\n")
    (walk,) = analyze_sources([str(path)], "combined").walks
    assert walk["addresses"] == 300 and walk["networks"] and walk["networks"][0]["clients"] == 300
    label = walk["networks"][0]["network"]
    assert label and label in render_html(analyze_sources([str(path)], "combined"))


def test_a_walk_needs_its_address_changes_in_number_as_well_as_in_share():
    settings = WalkSettings(min_pages=50, min_address_changes=8, min_hop_share=0.1)

    def walk_changing_address_every(pages: int) -> list[dict]:
        tracker = WalkTracker(settings)
        feed(tracker, [(float(n), 0, n // pages, n // pages, 100 + n) for n in range(60)], batches=1)
        return tracker.walks(["walker"])

    assert walk_changing_address_every(9) == []  # 6 changes: a tenth of the links, but too few
    (walk,) = walk_changing_address_every(6)  # 9 changes
    assert walk["address_changes"] == 9 and walk["walk_pages"] == 60


@pytest.mark.parametrize("retire", [False, True], ids=["all at the end", "retired as they go idle"])
def test_a_walk_of_a_few_pages_per_address_is_found_and_one_address_is_left_to_enumeration(make_logs, tmp_path,
                                                                                         retire):
    result, scraper = shop_log(make_logs, tmp_path, per_address=5, retire=retire)
    walked = {f.ip for f in result.clients if "behav.distributed_walk" in f.reason_codes}
    assert len(walked & scraper) == len(scraper) == 100
    (walk,) = result.walks
    # 99 changes of its own (addresses renumbered as others retire must not read as changes) and
    # a few people landing on the id after its page
    assert 99 <= walk["address_changes"] <= 105
    result, scraper = shop_log(make_logs, tmp_path, per_address=1000)
    (only,) = scraper
    finding = next(f for f in result.clients if f.ip == only)
    assert "behav.enumeration" in finding.reason_codes and "behav.distributed_walk" not in finding.reason_codes
    assert result.walks == [] and "Catalogue walks" not in render_html(result)
