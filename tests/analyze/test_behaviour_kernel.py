"""The behaviour kernel equals its plain-Python reference on random event streams, split into chunks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldware.analyze.behaviour import (
    I_BARE,
    I_COUNT,
    I_LOGIN_FAIL,
    I_NO_REF,
    I_PAGES,
    I_PROBE,
    I_REFUSED,
    I_SEQ,
    I_STATIC,
    ClientState,
    hll_estimate,
    observe,
    observe_reference,
    summarise,
)

N_GROUPS, STATIC, LOGIN, POST, BARE = 4, 0, 1, 1, 2

event = st.tuples(
    st.integers(0, 5),  # client
    st.floats(0, 5000, allow_nan=False),  # time offset
    st.integers(0, N_GROUPS - 1),  # group
    st.integers(0, 2),  # method (0 GET, 1 POST, 2 none: a line without a request line)
    st.integers(0, 30),  # path id
    st.sampled_from([200, 200, 301, 400, 401, 403, 404, 408, 414, 431, 500]),
    st.booleans(),  # has referer
)


def run_kernel(events, chunks):
    product_ids = np.array([p - 10 if p >= 10 else -1 for p in range(31)], dtype=np.int64)
    state = ClientState(N_GROUPS, capacity=2)
    static = np.array([g == STATIC for g in range(N_GROUPS)], dtype=np.bool_)
    for part in np.array_split(np.arange(len(events)), chunks):
        rows = [events[i] for i in part]
        if not rows:
            continue
        keys = np.array([r[0] for r in rows], dtype=np.int32)
        times = np.array([r[1] for r in rows], dtype=np.float64)
        state.ensure(int(keys.max()) + 1)
        observe(
            np.argsort(times, kind="stable"),
            keys,
            times,
            np.array([r[2] for r in rows], dtype=np.int8),
            np.array([r[3] for r in rows], dtype=np.int32),
            np.array([r[4] for r in rows], dtype=np.int32),
            np.array([r[5] for r in rows], dtype=np.int32),
            np.array([r[6] for r in rows], dtype=np.bool_),
            np.array([r[3] == BARE for r in rows], dtype=np.bool_),
            product_ids,
            static,
            LOGIN,
            POST,
            state.floats,
            state.ints,
            state.hll_paths,
            state.hll_products,
            state.groups,
            state.rep_path,
            state.rep_method,
        )
    return state, product_ids


@settings(max_examples=60, deadline=None)
@given(st.lists(event, min_size=1, max_size=300), st.integers(1, 4))
def test_kernel_matches_reference(raw_events, chunks):
    base = 1_790_000_000.0
    events = sorted(((c, base + t, g, m, p, s, r) for c, t, g, m, p, s, r in raw_events), key=lambda e: e[1])
    state, product_ids = run_kernel(events, chunks)
    reference = observe_reference(
        [(c, t, g, m, p, s, r, int(product_ids[p])) for c, t, g, m, p, s, r in events],
        6,
        N_GROUPS,
        {STATIC},
        LOGIN,
        POST,
        BARE,
    )
    size = state.size
    for name, column in (
        ("count", I_COUNT),
        ("pages", I_PAGES),
        ("static", I_STATIC),
        ("no_ref", I_NO_REF),
        ("probe", I_PROBE),
        ("login_fail", I_LOGIN_FAIL),
        ("seq", I_SEQ),
        ("refused", I_REFUSED),
        ("bare", I_BARE),
    ):
        assert state.ints[:size, column].tolist() == reference[name][:size], name
    summary = summarise(state)
    assert np.allclose(summary.peak10, reference["peak10"][:size])
    assert np.allclose(summary.peak60, reference["peak60"][:size])
    assert np.allclose(summary.peak_refused, reference["peak_refused"][:size])


def test_sketch_counts_distinct_values_within_hyperloglog_error():
    state = ClientState(1, capacity=1)
    state.ensure(1)
    for n in (10, 100, 1000):
        state.hll_paths[:] = 0
        rows = np.arange(n, dtype=np.int32)
        keys = np.zeros(n, dtype=np.int32)
        times = np.arange(n, dtype=np.float64)
        observe(
            np.arange(n),
            keys,
            times,
            np.zeros(n, dtype=np.int8),
            np.zeros(n, dtype=np.int32),
            rows,
            np.full(n, 200, dtype=np.int32),
            np.ones(n, dtype=np.bool_),
            np.zeros(n, dtype=np.bool_),
            np.full(n, -1, dtype=np.int64),
            np.zeros(1, dtype=np.bool_),
            -1,
            1,
            state.floats,
            state.ints,
            state.hll_paths,
            state.hll_products,
            state.groups,
            state.rep_path,
            state.rep_method,
        )
        estimate = float(hll_estimate(state.hll_paths[:1])[0])
        assert abs(estimate - n) / n < 0.35, (n, estimate)  # 64 registers: ~13 % standard error
