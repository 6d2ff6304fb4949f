"""Column layout of the window state arrays and event arrays, shared by kernels and references.

One key = one slot = one row in each array:

* ``keys[slot]`` (int64): the key's 64-bit hash, 0 when the slot is empty;
* ``state[slot, :]`` (float64, ``STATE_WIDTH`` columns): times, GCRA theoretical arrival
  times, sliding counters, inter-arrival moments, decayed ratios, HyperLogLog sums, the
  remembered steps (48 columns: a row is six 64-byte cache lines);
* ``registers[slot, :]`` (uint8, ``DISTINCT_SKETCHES * HLL_REGISTERS``): the sketches.

Float64 everywhere (rather than float32 counters) keeps the kernels and their Python
references bit-for-bit comparable and epoch timestamps exact to the microsecond; it costs
about 150 bytes per key.
"""

from __future__ import annotations

from shieldware.store.base import (
    COUNTER_HORIZONS,
    DISTINCT_SKETCHES,
    HLL_REGISTERS,
    MAX_LIMITS,
    RATIO_CHANNELS,
    RATIO_HALF_LIVES,
    STATS_FIELDS,
    STEP_MEMORY,
    TIMING_SPANS,
    VISIT_GAP,  # noqa: F401  (re-exported for the kernels)
)

N_HORIZONS = len(COUNTER_HORIZONS)
assert all(h % COUNTER_HORIZONS[0] == 0 for h in COUNTER_HORIZONS), "horizons must be multiples of the first"
N_SPANS = len(TIMING_SPANS)
N_HALF_LIVES = len(RATIO_HALF_LIVES)
ALPHAS = tuple(2.0 / (span + 1.0) for span in TIMING_SPANS)
# Ratios decay by exp(-elapsed * ln2 / longest half-life), raised to an integer power for the
# shorter half-lives: one exp per update instead of one per half-life.
DECAY_BASE_RATE = 0.6931471805599453 / max(RATIO_HALF_LIVES)
DECAY_POWERS = tuple(round(max(RATIO_HALF_LIVES) / h) for h in RATIO_HALF_LIVES)
assert all(p * h == max(RATIO_HALF_LIVES) for p, h in zip(DECAY_POWERS, RATIO_HALF_LIVES, strict=True)), \
    "ratio half-lives must divide the longest one"

# state columns
LAST_SEEN = 0
VISIT_START = 1
LAST_TIMED = 2          # -1 while the visit has no timed event yet
RATIO_TIME = 3          # ratios decay lazily: the time they were last brought up to date
TAT = 4                 # MAX_LIMITS GCRA theoretical arrival times
COUNTER = TAT + MAX_LIMITS      # (current, previous) bucket per horizon
TOTAL = COUNTER + 2 * N_HORIZONS
GAPS = TOTAL + 1
MEAN = GAPS + 1                 # per span
VAR = MEAN + N_SPANS            # per span
RATIO_NUM = VAR + N_SPANS       # channel * N_HALF_LIVES + half-life
RATIO_DEN = RATIO_NUM + RATIO_CHANNELS * N_HALF_LIVES
HLL_SUM = RATIO_DEN + RATIO_CHANNELS * N_HALF_LIVES   # per sketch: sum of 2^(HLL_MAX_RANK - register)
HLL_ZEROS = HLL_SUM + DISTINCT_SKETCHES                 # per sketch: registers still zero
STEPS = HLL_ZEROS + DISTINCT_SKETCHES   # STEP_MEMORY remembered step markers (step + 1; 0 = empty)
STEP_NEXT = STEPS + STEP_MEMORY         # where the next step is written in that ring
STATE_WIDTH = STEP_NEXT + 1

# HyperLogLog: 64 registers indexed by the hash's top 6 bits; the rank is read from the next
# bits and capped so sums of 2^(cap - rank) stay exact integers in a float64.
HLL_INDEX_BITS = 6
assert 1 << HLL_INDEX_BITS == HLL_REGISTERS
HLL_MAX_RANK = 40
HLL_ALPHA = 0.709  # bias constant for m = 64 (Flajolet et al. 2007)
REGISTER_WIDTH = DISTINCT_SKETCHES * HLL_REGISTERS

# event arrays: ints (int64) and floats (float64)
EV_HASH = 0
EV_ITEM = 1                        # DISTINCT_SKETCHES item hashes (0 = none)
EV_FLAGS = EV_ITEM + DISTINCT_SKETCHES  # seen | hits << 8 | timing << 16 | (step_gap - 1) << 17 | follow_hits << 24
EV_STEP = EV_FLAGS + 1             # step + 1 (0 = none), as store.base.step_marker writes it
EV_INT_WIDTH = EV_STEP + 1
EV_TIME = 0
EV_COUNT = 1
EV_LIMIT = 2                       # (interval, burst) per limit; interval 0 = no limit
EV_FLOAT_WIDTH = EV_LIMIT + 2 * MAX_LIMITS

# output row, as STATS_FIELDS
OUT_WIDTH = len(STATS_FIELDS)
OUT_GAPS = STATS_FIELDS.index("gaps")
OUT_MEAN = OUT_GAPS + 1
OUT_STD = OUT_MEAN + N_SPANS
OUT_DISTINCT = OUT_STD + N_SPANS
OUT_RATIO = OUT_DISTINCT + DISTINCT_SKETCHES
OUT_WEIGHT = OUT_RATIO + RATIO_CHANNELS * N_HALF_LIVES
OUT_RETRY = STATS_FIELDS.index("retry_after")
OUT_VISIT = STATS_FIELDS.index("visit_start")
OUT_TOTAL = STATS_FIELDS.index("total")
OUT_FOLLOWS = STATS_FIELDS.index("follows")

GCRA_SLACK = 1e-6
"""Seconds of float drift a GCRA check forgives (TATs are sums of intervals like 0.2)."""

PROBES = 8
"""Slots examined per lookup (open addressing, linear probing). When all are taken by other
keys, the one idle longest among them is evicted: sampled LRU, like Redis's, bounded work."""

