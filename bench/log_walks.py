"""Bench: does `shieldware analyze` find catalogue walks through rotating proxies in a log, and leave people be?

Generated combined logs (tests/fixtures/logs/make_logs.py's people: a home page, a listing or a
search, two to six product pages with their assets, in five browsers' user agents), one hour
each, through the whole analyzer. The scraper sends desktop Chrome's user agent, the one a fifth
of the people send, and a new residential address every `per_address` pages. Per scenario: the
share of the scraper's addresses whose client carries `behav.distributed_walk`, the people's
clients that carry it, and the walks the report lists.

`tuning`: the scenarios WalkSettings' defaults were chosen on; `held_out`: written after they
were fixed and run once. Also times the Numba kernel against its plain-Python reference on one
scenario's product pages.

    python bench/log_walks.py [--only tuning|held_out]
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shieldware.analyze.pipeline import analyze_sources  # noqa: E402
from shieldware.analyze.walks import WalkSettings, WalkTracker, link_walks_reference  # noqa: E402


def _generator():
    spec = importlib.util.spec_from_file_location("make_logs", ROOT / "tests" / "fixtures" / "logs" / "make_logs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_logs"] = module
    spec.loader.exec_module(module)
    return module


make_logs = _generator()


@dataclass(frozen=True)
class Scenario:
    name: str
    visits_per_hour: int = 4000     # people (each opens 2-6 product pages)
    catalogue: int = 5000
    hot_share: float = 0.0          # share of people's product pages on a few hot, neighbouring ids
    hot_ids: int = 10
    scraper_per_s: float = 1.0      # 0: no scraper
    scraper_pages: int = 1500
    per_address: int = 1            # scraper pages per address before it rotates
    stride: tuple[int, ...] = (1,)  # id steps, drawn at random
    chunk_shuffle: int = 0          # > 1: ids walked in shuffled chunks of this size
    scraper_ua: str = make_logs.CHROME


TUNING = (
    Scenario("1 page/s, new address every page, among 4,000 visits/h"),
    Scenario("0.3 pages/s among 12,000 visits/h", visits_per_hour=12000, scraper_per_s=0.3),
    Scenario("2 pages per address, skipping a third of the ids", per_address=2, stride=(1, 1, 2)),
    Scenario("chunks of 10 ids shuffled", chunk_shuffle=10),
    Scenario("no scraper, a busy small shop: 20,000 visits/h on 300 products", visits_per_hour=20000,
             catalogue=300, scraper_per_s=0),
    Scenario("no scraper, a newsletter: half the product pages on 10 neighbouring ids", hot_share=0.5,
             scraper_per_s=0),
    # Held out at first and missed (see below); tuned on since.
    Scenario("3 pages/s in Firefox's user agent, 5 pages per address, 20,000 products", catalogue=20000,
             scraper_per_s=3.0, per_address=5, scraper_ua=make_logs.FIREFOX, scraper_pages=3000),
)
# Written after the defaults were fixed, and run once. A fifth one, the last of TUNING now, missed
# its scraper (0 of 600 addresses): the rule then asked half the links to change address, and five
# pages per address make a fifth. The rule became 8 address changes and a tenth of the links
# (WalkSettings); the three after the line below were written then, and run once.
HELD_OUT = (
    Scenario("0.5 pages/s stepping 1, 1, 1 or 3 among 8,000 visits/h", visits_per_hour=8000, scraper_per_s=0.5,
             stride=(1, 1, 1, 3)),
    Scenario("no scraper, 30,000 visits/h on 1,000 products, a third on 20 hot ids", visits_per_hour=30000,
             catalogue=1000, hot_share=0.33, hot_ids=20, scraper_per_s=0),
    Scenario("no scraper, a tiny shop: 120 products, 6,000 visits/h", visits_per_hour=6000, catalogue=120,
             scraper_per_s=0),
    # ---- written after the rule changed
    Scenario("1 page/s in Safari iOS's user agent, 4 pages per address, 10,000 products, 6,000 visits/h",
             visits_per_hour=6000, catalogue=10000, per_address=4, scraper_ua=make_logs.SAFARI_IOS),
    Scenario("one address walking at 1 page/s among 8,000 visits/h (enumeration's, not this)", visits_per_hour=8000,
             per_address=10**6),
    Scenario("no scraper, 40,000 visits/h on 2,000 products", visits_per_hour=40000, catalogue=2000,
             scraper_per_s=0),
)


def scraper_ids(scenario: Scenario, rng: random.Random) -> list[int]:
    pid, ids = rng.randrange(1, max(2, scenario.catalogue // 3)), []
    while len(ids) < scenario.scraper_pages:
        if scenario.chunk_shuffle > 1:
            chunk = list(range(pid, pid + scenario.chunk_shuffle))
            rng.shuffle(chunk)
            ids += chunk
            pid += scenario.chunk_shuffle
        else:
            ids.append(pid)
            pid += rng.choice(scenario.stride)
    return ids[:scenario.scraper_pages]


def events_of(scenario: Scenario, seed: int = 5) -> tuple[list, set[str]]:
    """The hour's events in time order, and the scraper's addresses."""
    rng = random.Random(seed)
    nets = [ipaddress.ip_network(n) for n in make_logs.RESIDENTIAL]
    hot_base = rng.randrange(1, max(2, scenario.catalogue - scenario.hot_ids))

    def pick(r: random.Random) -> int:
        if r.random() < scenario.hot_share:
            return hot_base + r.randrange(scenario.hot_ids)
        return r.randrange(1, scenario.catalogue)

    def address() -> str:
        net = nets[rng.randrange(len(nets))]
        return str(net.network_address + rng.randrange(256, 65000))

    events = []
    for n in range(scenario.visits_per_hour):
        ua = make_logs.BROWSERS[n % len(make_logs.BROWSERS)]
        events.extend(make_logs._browser_visit(rng, address(), ua, make_logs.START + rng.uniform(0, 3600),
                                               pick=pick))
    scraper: set[str] = set()
    if scenario.scraper_per_s > 0:
        t = make_logs.START + 120
        ip = address()
        for n, pid in enumerate(scraper_ids(scenario, rng)):
            if n % scenario.per_address == 0:
                ip = address()
                scraper.add(ip)
            t += rng.expovariate(scenario.scraper_per_s)
            events.append(make_logs.Event(t, ip, "GET", f"/product/{pid}", 200, 9000, "", scenario.scraper_ua))
    events.sort(key=lambda e: e.time)
    return events, scraper


def run(scenario: Scenario, folder: Path) -> dict:
    events, scraper = events_of(scenario)
    log = folder / "access.log"
    log.write_text("\n".join(make_logs.render_combined(e) for e in events) + "\n")
    started = time.perf_counter()
    result = analyze_sources([str(log)], "combined")
    seconds = time.perf_counter() - started
    walked = {f.ip for f in result.clients if "behav.distributed_walk" in f.reason_codes}
    people = {f"{f.ip}|{f.user_agent}" for f in result.clients if f.ip not in scraper}
    people_flagged = {f.ip for f in result.clients if f.ip not in scraper and f.ip in walked}
    row = {
        "scenario": scenario.name,
        "lines": len(events),
        "analyze_seconds": round(seconds, 2),
        "walks_listed": [{k: w[k] for k in ("walk_pages", "chain_pages", "address_changes", "first_id", "last_id")}
                         for w in result.walks[:5]],
        "people_clients": len(people) + result.humans_not_listed,
        "people_with_the_finding": len(people_flagged),
    }
    if scraper:
        flagged = {f.ip for f in result.clients if f.flagged}
        row["scraper_addresses"] = len(scraper)
        row["scraper_addresses_flagged_at_all"] = round(len(flagged & scraper) / len(scraper), 4)
        row["scraper_addresses_with_the_finding"] = round(len(walked & scraper) / len(scraper), 4)
    return row


def kernel_against_reference(scenario: Scenario) -> dict:
    """Seconds per million product pages: the Numba kernel and its plain-Python reference."""
    events, _ = events_of(scenario)
    pages = [e for e in events if e.path.startswith("/product/")]
    uas = {ua: i for i, ua in enumerate(sorted({e.ua for e in pages}))}
    ips = {ip: i for i, ip in enumerate(sorted({e.ip for e in pages}))}
    rows = [(e.time, uas[e.ua], ips[e.ip], ips[e.ip], int(e.path.rsplit("/", 1)[1])) for e in pages]
    columns = [np.array(c) for c in zip(*rows, strict=True)]
    times, ua_ids, ip_ids, clients, pids = (columns[0].astype(np.float64), *(c.astype(np.int64) for c in columns[1:]))
    order = np.arange(len(rows))
    WalkTracker().feed(order[:10], times[:10], ua_ids[:10], ip_ids[:10], clients[:10], pids[:10])  # compiled
    best_kernel = best_reference = float("inf")
    for _ in range(3):
        tracker = WalkTracker()
        started = time.perf_counter()
        tracker.feed(order, times, ua_ids, ip_ids, clients, pids)
        best_kernel = min(best_kernel, time.perf_counter() - started)
        started = time.perf_counter()
        link_walks_reference(rows, WalkSettings())
        best_reference = min(best_reference, time.perf_counter() - started)
    per_million = 1e6 / len(rows)
    return {"product_pages": len(rows), "kernel_s_per_million": round(best_kernel * per_million, 3),
            "reference_s_per_million": round(best_reference * per_million, 3),
            "speedup": round(best_reference / best_kernel, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("tuning", "held_out"))
    args = parser.parse_args()
    report: dict = {"settings": asdict(WalkSettings())}
    with tempfile.TemporaryDirectory() as folder:
        for name, scenarios in (("tuning", TUNING), ("held_out", HELD_OUT)):
            if args.only in (None, name):
                report[name] = []
                for scenario in scenarios:
                    report[name].append(run(scenario, Path(folder)))
                    print(json.dumps(report[name][-1]), file=sys.stderr)
    report["kernel_vs_reference"] = kernel_against_reference(TUNING[1])
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
