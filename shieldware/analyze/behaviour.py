"""Per-client behaviour over time in batch: a Numba kernel over time-sorted events, and its evidence.

The state of every client (IP, or IP + user agent) lives in numpy arrays that persist across
chunks, so memory grows with the number of clients, never with the number of lines. The
kernel keeps, per client: counts by route group, sliding-window peaks (10 s and 60 s of page
requests, 10 min of failed logins; weighted previous/current bucket, as the live windows do),
inter-arrival regularity (Welford mean/variance of page gaps within a visit), small
HyperLogLog sketches of distinct paths and product ids, sequential product-id steps, the
asset / referer / error shares, and the connections refused before the shop saw a request
(a 60 s window: slowloris and header floods). `observe_reference` is the plain-Python twin the tests check.

When the live windows (shieldware/windows, issue 3) land, their batch kernels replace this one
and their reason codes and weights take precedence (codes below are only registered if absent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from shieldware.evidence import reason_catalogue, register_reason

_REASONS = {
    "rate.ip.burst": (
        60,
        "The client sent page requests far faster than a person reads pages "
        "(peak requests per 10 s / 60 s window).",
    ),
    "behav.regular_timing": (
        50,
        "Gaps between the client's page requests were machine-regular "
        "(low coefficient of variation over many requests).",
    ),
    "behav.enumeration": (
        60,
        "The client walked many distinct product pages and little else; sequential ids make it certain.",
    ),
    "behav.no_assets": (
        35,
        "Many pages and not one stylesheet, script or image: the pages were fetched, not rendered.",
    ),
    "behav.no_referer": (15, "Almost none of the client's page requests carried a Referer."),
    "behav.probing": (
        50,
        "A high share of the client's requests ended in 404/403: probing for paths that do not exist.",
    ),
    "ato.login_failures": (
        90,
        "Many failed logins from one client in a short window: credential stuffing or password guessing.",
    ),
    "conn.refused_requests": (
        80,
        "Many of the client's connections were refused before any page was served: requests that came "
        "too slowly (408), heads too large (431/414) or no request at all. Slowloris and header floods "
        "attack the server itself.",
    ),
}
for _code, (_weight, _text) in _REASONS.items():
    if _code not in reason_catalogue():
        register_reason(_code, _weight, _text)

HLL_REGISTERS = 64
WINDOWS = (10.0, 60.0)  # page-rate horizons, seconds
LOGIN_WINDOW = 600.0  # failed-login horizon, seconds
REFUSED_WINDOW = 60.0  # refused-connection horizon, seconds
VISIT_GAP = 120.0  # longer pauses start a new visit and do not count for regularity


@dataclass(frozen=True)
class Thresholds:
    """When behaviour becomes evidence. Defaults are conservative: a person must not trip them."""

    burst_per_10s: float = 30
    burst_per_60s: float = 90
    regular_min_gaps: int = 30
    regular_max_cv: float = 0.35
    enumeration_min_products: int = 100
    enumeration_min_share: float = 0.7
    sequential_share: float = 0.5
    no_assets_min_pages: int = 50
    site_static_share: float = 0.05  # no_assets only means something when the log has assets at all
    no_referer_min_pages: int = 50
    no_referer_max_share: float = 0.05
    probing_min: int = 30
    probing_min_share: float = 0.3
    login_failures_per_window: int = 20
    # Chrome opens spare connections and closes them unused (1-6 a page); nginx logs each as
    # "-" 400 or 408. Slowloris holds 150 by default, all refused within one timeout.
    refused_per_60s: float = 60


# Column indexes of the float and int state tables.
F_FIRST, F_LAST, F_LAST_PAGE, F_GAP_MEAN, F_GAP_M2, F_PEAK10, F_PEAK60, F_PEAK_LOGIN = range(8)
F_W10_PREV, F_W10_CUR, F_W60_PREV, F_W60_CUR, F_WL_PREV, F_WL_CUR = range(8, 14)
F_WR_PREV, F_WR_CUR, F_PEAK_REFUSED = range(14, 17)
N_FLOAT = 17
(
    I_COUNT,
    I_PAGES,
    I_STATIC,
    I_NO_REF,
    I_4XX,
    I_PROBE,
    I_LOGIN_POST,
    I_LOGIN_FAIL,
    I_GAPS,
    I_PRODUCTS,
    I_SEQ,
    I_LAST_PID,
    I_W10_IDX,
    I_W60_IDX,
    I_WL_IDX,
    I_REFUSED,
    I_BARE,
    I_WR_IDX,
) = range(18)
N_INT = 18


class ClientState:
    """Growable per-client state tables (rows are client ids)."""

    def __init__(self, n_groups: int, capacity: int = 1024) -> None:
        self.n_groups = n_groups
        self.size = 0
        self.floats = np.zeros((capacity, N_FLOAT), dtype=np.float64)
        self.ints = np.zeros((capacity, N_INT), dtype=np.int64)
        self.ints[:, I_LAST_PID] = -1
        self.hll_paths = np.zeros((capacity, HLL_REGISTERS), dtype=np.uint8)
        self.hll_products = np.zeros((capacity, HLL_REGISTERS), dtype=np.uint8)
        self.groups = np.zeros((capacity, n_groups), dtype=np.int64)
        self.rep_path = np.full((capacity, n_groups), -1, dtype=np.int32)
        self.rep_method = np.full((capacity, n_groups), -1, dtype=np.int32)

    def ensure(self, size: int) -> None:
        capacity = self.floats.shape[0]
        if size > capacity:
            grow = max(size, capacity * 2)
            for name in ("floats", "ints", "hll_paths", "hll_products", "groups", "rep_path", "rep_method"):
                old = getattr(self, name)
                fill = -1 if name in ("rep_path", "rep_method") else 0
                new = np.full((grow, *old.shape[1:]), fill, dtype=old.dtype)
                new[:capacity] = old
                if name == "ints":
                    new[capacity:, I_LAST_PID] = -1
                setattr(self, name, new)
        self.size = max(self.size, size)

    def keep(self, rows: np.ndarray) -> None:
        """Keep only `rows` (in that order, renumbered from 0): retired clients give their memory back."""
        count = int(rows.shape[0])
        capacity = max(1024, count * 2)
        for name in ("floats", "ints", "hll_paths", "hll_products", "groups", "rep_path", "rep_method"):
            old = getattr(self, name)
            fill = -1 if name in ("rep_path", "rep_method") else 0
            new = np.full((capacity, *old.shape[1:]), fill, dtype=old.dtype)
            new[:count] = old[rows]
            if name == "ints":
                new[count:, I_LAST_PID] = -1
            setattr(self, name, new)
        self.size = count

    @property
    def nbytes(self) -> int:
        return sum(
            getattr(self, n).nbytes
            for n in ("floats", "ints", "hll_paths", "hll_products", "groups", "rep_path", "rep_method")
        )


@njit(cache=True, nogil=True)
def _mix(value):
    # splitmix64 finaliser: spreads small integer ids over 64 bits for the sketches.
    z = np.uint64(value) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _hll_add(registers, row, value):
    h = _mix(value)
    index = np.int64(h & np.uint64(63))
    rest = h >> np.uint64(6)
    rank = 1
    while rank < 58 and (rest & np.uint64(1)) == np.uint64(0):
        rest = rest >> np.uint64(1)
        rank += 1
    if rank > registers[row, index]:
        registers[row, index] = rank


@njit(cache=True, nogil=True)
def _slide(floats, ints, row, t, width, idx_col, prev_col, cur_col):
    """Weighted previous/current bucket counter: add one event, return the window estimate."""
    bucket = np.int64(np.floor(t / width))
    current = ints[row, idx_col]
    if bucket == current:
        floats[row, cur_col] += 1.0
    elif bucket == current + 1:
        floats[row, prev_col] = floats[row, cur_col]
        floats[row, cur_col] = 1.0
        ints[row, idx_col] = bucket
    elif bucket > current:
        floats[row, prev_col] = 0.0
        floats[row, cur_col] = 1.0
        ints[row, idx_col] = bucket
    else:  # a slightly late line: count it in the current bucket
        floats[row, cur_col] += 1.0
    elapsed = (t - ints[row, idx_col] * width) / width
    elapsed = min(max(elapsed, 0.0), 1.0)
    return floats[row, prev_col] * (1.0 - elapsed) + floats[row, cur_col]


@njit(cache=True, nogil=True)
def observe(
    order,
    keys,
    times,
    groups,
    methods,
    paths,
    statuses,
    has_referer,
    bare,
    product_ids,
    is_static_group,
    login_group,
    post_method,
    floats,
    ints,
    hll_paths,
    hll_products,
    group_counts,
    rep_path,
    rep_method,
):
    """Feed events (visited in `order`, which sorts them by time) into the per-client state.

    `bare[i]`: event i had no request line (logged as "-"), a connection that asked for nothing."""
    for j in range(order.shape[0]):
        i = order[j]
        row = keys[i]
        t = times[i]
        group = groups[i]
        status = statuses[i]
        ints[row, I_COUNT] += 1
        if ints[row, I_COUNT] == 1:
            floats[row, F_FIRST] = t
        floats[row, F_LAST] = max(floats[row, F_LAST], t)
        if bare[i] or status == 408 or status == 414 or status == 431:
            # Refused by the server before the shop saw a request: no page, no visit, no group.
            ints[row, I_REFUSED] += 1
            if bare[i]:
                ints[row, I_BARE] += 1
            est = _slide(floats, ints, row, t, REFUSED_WINDOW, I_WR_IDX, F_WR_PREV, F_WR_CUR)
            floats[row, F_PEAK_REFUSED] = max(floats[row, F_PEAK_REFUSED], est)
            continue
        group_counts[row, group] += 1
        if rep_path[row, group] < 0:
            rep_path[row, group] = paths[i]
            rep_method[row, group] = methods[i]
        if 400 <= status < 500:
            ints[row, I_4XX] += 1
            if status == 404 or status == 403:
                ints[row, I_PROBE] += 1
        if group == login_group and methods[i] == post_method:
            ints[row, I_LOGIN_POST] += 1
            if status == 401 or status == 403 or status == 429:
                ints[row, I_LOGIN_FAIL] += 1
                est = _slide(floats, ints, row, t, 600.0, I_WL_IDX, F_WL_PREV, F_WL_CUR)
                floats[row, F_PEAK_LOGIN] = max(floats[row, F_PEAK_LOGIN], est)
        if is_static_group[group]:
            ints[row, I_STATIC] += 1
            continue
        ints[row, I_PAGES] += 1
        if not has_referer[i]:
            ints[row, I_NO_REF] += 1
        if ints[row, I_PAGES] > 1:
            gap = t - floats[row, F_LAST_PAGE]
            if 0.0 <= gap <= 120.0:
                # Welford's update of mean and sum of squared deviations.
                ints[row, I_GAPS] += 1
                n = ints[row, I_GAPS]
                delta = gap - floats[row, F_GAP_MEAN]
                floats[row, F_GAP_MEAN] += delta / n
                floats[row, F_GAP_M2] += delta * (gap - floats[row, F_GAP_MEAN])
        floats[row, F_LAST_PAGE] = t
        est = _slide(floats, ints, row, t, 10.0, I_W10_IDX, F_W10_PREV, F_W10_CUR)
        floats[row, F_PEAK10] = max(floats[row, F_PEAK10], est)
        est = _slide(floats, ints, row, t, 60.0, I_W60_IDX, F_W60_PREV, F_W60_CUR)
        floats[row, F_PEAK60] = max(floats[row, F_PEAK60], est)
        _hll_add(hll_paths, row, paths[i])
        pid = product_ids[paths[i]]
        if pid >= 0:
            ints[row, I_PRODUCTS] += 1
            _hll_add(hll_products, row, pid)
            last = ints[row, I_LAST_PID]
            if last >= 0 and (pid - last == 1 or last - pid == 1):
                ints[row, I_SEQ] += 1
            ints[row, I_LAST_PID] = pid


def hll_estimate(registers: np.ndarray) -> np.ndarray:
    """HyperLogLog cardinality per row (64 registers, small-range correction)."""
    m = registers.shape[1]
    alpha = 0.709
    raw = alpha * m * m / np.sum(np.exp2(-registers.astype(np.float64)), axis=1)
    zeros = np.sum(registers == 0, axis=1)
    small = (raw <= 2.5 * m) & (zeros > 0)
    with np.errstate(divide="ignore"):
        linear = m * np.log(m / np.maximum(zeros, 1))
    return np.where(small, linear, raw)


@dataclass
class BehaviourSummary:
    """Per-client numbers behind the evidence (arrays indexed by client id)."""

    requests: np.ndarray
    pages: np.ndarray
    static: np.ndarray
    first: np.ndarray
    last: np.ndarray
    peak10: np.ndarray
    peak60: np.ndarray
    gap_cv: np.ndarray
    gaps: np.ndarray
    distinct_paths: np.ndarray
    distinct_products: np.ndarray
    products: np.ndarray
    sequential: np.ndarray
    no_referer: np.ndarray
    errors_4xx: np.ndarray
    probes: np.ndarray
    login_posts: np.ndarray
    login_failures: np.ndarray
    peak_login_failures: np.ndarray
    refused: np.ndarray
    bare: np.ndarray
    peak_refused: np.ndarray


def summarise(state: ClientState) -> BehaviourSummary:
    n = state.size
    f, i = state.floats[:n], state.ints[:n]
    gaps = i[:, I_GAPS]
    variance = np.where(gaps > 1, f[:, F_GAP_M2] / np.maximum(gaps - 1, 1), 0.0)
    mean = f[:, F_GAP_MEAN]
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where(mean > 0, np.sqrt(variance) / mean, np.inf)
    products = i[:, I_PRODUCTS]
    return BehaviourSummary(
        requests=i[:, I_COUNT].copy(),
        pages=i[:, I_PAGES].copy(),
        static=i[:, I_STATIC].copy(),
        first=f[:, F_FIRST].copy(),
        last=f[:, F_LAST].copy(),
        peak10=f[:, F_PEAK10].copy(),
        peak60=f[:, F_PEAK60].copy(),
        gap_cv=cv,
        gaps=gaps.copy(),
        distinct_paths=np.minimum(hll_estimate(state.hll_paths[:n]), i[:, I_PAGES]),
        distinct_products=np.minimum(hll_estimate(state.hll_products[:n]), products),
        products=products.copy(),
        sequential=i[:, I_SEQ].copy(),
        no_referer=i[:, I_NO_REF].copy(),
        errors_4xx=i[:, I_4XX].copy(),
        probes=i[:, I_PROBE].copy(),
        login_posts=i[:, I_LOGIN_POST].copy(),
        login_failures=i[:, I_LOGIN_FAIL].copy(),
        peak_login_failures=f[:, F_PEAK_LOGIN].copy(),
        refused=i[:, I_REFUSED].copy(),
        bare=i[:, I_BARE].copy(),
        peak_refused=f[:, F_PEAK_REFUSED].copy(),
    )


Finding = tuple[str, dict]


def behaviour_evidence(
    summary: BehaviourSummary, row: int, site_static_share: float, limits: Thresholds = Thresholds()
) -> list[Finding]:
    """The behaviour findings of one client as (reason code, detail) pairs."""
    found: list[Finding] = []
    s = summary
    pages = int(s.pages[row])
    if s.peak10[row] >= limits.burst_per_10s or s.peak60[row] >= limits.burst_per_60s:
        found.append(
            (
                "rate.ip.burst",
                {
                    "peak_per_10s": round(float(s.peak10[row]), 1),
                    "peak_per_60s": round(float(s.peak60[row]), 1),
                },
            )
        )
    if s.gaps[row] >= limits.regular_min_gaps and s.gap_cv[row] <= limits.regular_max_cv:
        found.append(
            ("behav.regular_timing", {"gaps": int(s.gaps[row]), "cv": round(float(s.gap_cv[row]), 3)})
        )
    products = int(s.products[row])
    distinct = round(float(s.distinct_products[row]))
    if (
        distinct >= limits.enumeration_min_products
        and pages
        and products / pages >= limits.enumeration_min_share
    ):
        sequential = s.sequential[row] / max(products - 1, 1)
        found.append(
            (
                "behav.enumeration",
                {
                    "distinct_products": distinct,
                    "product_share": round(products / pages, 2),
                    "sequential_share": round(float(sequential), 2),
                },
            )
        )
    if (
        pages >= limits.no_assets_min_pages
        and s.static[row] == 0
        and site_static_share >= limits.site_static_share
    ):
        found.append(("behav.no_assets", {"pages": pages, "assets": 0}))
    if (
        pages >= limits.no_referer_min_pages
        and (pages - s.no_referer[row]) / pages <= limits.no_referer_max_share
    ):
        found.append(("behav.no_referer", {"pages": pages, "with_referer": int(pages - s.no_referer[row])}))
    requests = int(s.requests[row])
    if s.probes[row] >= limits.probing_min and s.probes[row] / max(requests, 1) >= limits.probing_min_share:
        found.append(("behav.probing", {"not_found_or_forbidden": int(s.probes[row]), "requests": requests}))
    if s.peak_login_failures[row] >= limits.login_failures_per_window:
        found.append(
            (
                "ato.login_failures",
                {
                    "failed_logins": int(s.login_failures[row]),
                    "peak_per_10min": round(float(s.peak_login_failures[row]), 1),
                },
            )
        )
    if s.peak_refused[row] >= limits.refused_per_60s:
        found.append(
            (
                "conn.refused_requests",
                {
                    "refused": int(s.refused[row]),
                    "without_request_line": int(s.bare[row]),
                    "peak_per_60s": round(float(s.peak_refused[row]), 1),
                },
            )
        )
    return found


def evidence_weight(code: str, detail: dict, weights) -> float:
    """Weight of a behaviour finding: the policy's weight, raised for certain enumeration."""
    weight = weights(code)
    if code == "behav.enumeration" and detail.get("sequential_share", 0) >= Thresholds().sequential_share:
        weight = max(weight, 80.0)
    return weight


def observe_reference(
    events: list[tuple],
    n_clients: int,
    n_groups: int,
    static_groups: set[int],
    login_group: int,
    post_method: int,
    bare_method: int = -1,
) -> dict[str, list]:
    """Plain-Python twin of `observe` for the counters and windows the tests compare (no sketches).

    `events`: (client, time, group, method, path, status, has_referer, product_id) in time order;
    events whose method is `bare_method` are lines without a request line.
    """
    names = ("count", "pages", "static", "no_ref", "probe", "login_fail", "seq", "refused", "bare")
    out = {name: [0] * n_clients for name in names}
    peaks = {w: [0.0] * n_clients for w in (10.0, 60.0)}
    peak_refused = [0.0] * n_clients
    buckets: dict[tuple[int, float], list] = {}
    last_pid = [-1] * n_clients

    def slide(client: int, width: float, t: float, key: object) -> float:
        idx, prev, cur = buckets.get((client, key), [0, 0.0, 0.0])
        b = int(t // width)
        if b == idx:
            cur += 1
        elif b == idx + 1:
            prev, cur, idx = cur, 1.0, b
        elif b > idx:
            prev, cur, idx = 0.0, 1.0, b
        else:
            cur += 1
        buckets[(client, key)] = [idx, prev, cur]
        frac = min(max((t - idx * width) / width, 0.0), 1.0)
        return prev * (1 - frac) + cur

    for client, t, group, method, _path, status, has_ref, pid in events:
        out["count"][client] += 1
        if method == bare_method or status in (408, 414, 431):
            out["refused"][client] += 1
            out["bare"][client] += method == bare_method
            peak_refused[client] = max(peak_refused[client], slide(client, REFUSED_WINDOW, t, "refused"))
            continue
        if status in (403, 404):
            out["probe"][client] += 1
        if group == login_group and method == post_method and status in (401, 403, 429):
            out["login_fail"][client] += 1
        if group in static_groups:
            out["static"][client] += 1
            continue
        out["pages"][client] += 1
        out["no_ref"][client] += 0 if has_ref else 1
        for width in (10.0, 60.0):
            peaks[width][client] = max(peaks[width][client], slide(client, width, t, width))
        if pid >= 0:
            if last_pid[client] >= 0 and abs(pid - last_pid[client]) == 1:
                out["seq"][client] += 1
            last_pid[client] = pid
    out["peak10"] = peaks[10.0]
    out["peak60"] = peaks[60.0]
    out["peak_refused"] = peak_refused
    return out


def may_have_evidence(summary: BehaviourSummary, limits: Thresholds = Thresholds()) -> np.ndarray:
    """Rows that meet at least one necessary condition of a finding (the rest have none).

    Lets the caller skip `behaviour_evidence` for the many ordinary clients in one vector pass.
    """
    s = summary
    return (
        (s.peak10 >= limits.burst_per_10s)
        | (s.peak60 >= limits.burst_per_60s)
        | (s.gaps >= limits.regular_min_gaps)
        | (s.distinct_products >= limits.enumeration_min_products)
        | (s.pages >= min(limits.no_assets_min_pages, limits.no_referer_min_pages))
        | (s.probes >= limits.probing_min)
        | (s.peak_login_failures >= limits.login_failures_per_window)
        | (s.peak_refused >= limits.refused_per_60s)
    )
