-- shieldware window observation, run atomically inside Redis: the same algorithm as the Numba
-- kernels (shieldware/windows/kernels.py; readable spec in shieldware/windows/reference.py),
-- except that distinct counts use Redis's own HyperLogLog (PFADD/PFCOUNT).
--
-- KEYS: for each observation i (0-based), three keys sharing one hash tag:
--   KEYS[3i+1] state, KEYS[3i+2] sketch 0, KEYS[3i+3] sketch 1
-- ARGV: ttl_seconds, then per observation
--   numbers, item0, item1
-- numbers: little-endian doubles packed in one string (one argument: the client encodes each
-- argument in Python, so fewer, longer ones are cheaper), in this order:
--   now, answer, count, timing, seen, hits, step, interval0, burst0, interval1, burst1, follow
-- (step is the step marker: step + 1, 0 for none; follow = follow_hits + 256 * (step_gap - 1):
-- follow_hits the ratio channels whose numerator counts the step when it follows one remembered,
-- step_gap how far below it that one may be)
-- (answer 1 = return its stats row; 0 = feedback applied without an answer, piggybacked on a
-- request's call so that feedback costs no round trip of its own)
-- Returns: one binary string of little-endian doubles, STATS_FIELDS per answered observation.
--
-- A key's state is one string of packed doubles (struct.pack): one GET and one SET ... EX per
-- observation, exact to the bit, where a hash of decimal fields cost formatting and parsing of
-- every field on every request.

-- The window layout constants are written here by shieldware/store/redis.py from
-- shieldware/store/base.py, so Python and Lua cannot drift apart:
-- @CONSTANTS@
local PER_OBS = 1 + SKETCHES
-- Library functions as locals, and powers of two as a table: a global's lookup and a `^` on every
-- use are a noticeable part of an interpreted script's time.
local floor, exp, max, sqrt = math.floor, math.exp, math.max, math.sqrt
local POW2 = {}
for i = 0, 31 do POW2[i] = 2 ^ i end
local NUMBERS_FORMAT = "<" .. string.rep("d", 7 + 2 * LIMITS + 1)
local NH, NS, NK = #HORIZONS, #ALPHAS, #HALF_LIVES

-- positions in the packed state (1-based)
local LS, VS, LT, RT, TOT, GAPS, MASK = 1, 2, 3, 4, 5, 6, 7
local TAT = 8                      -- LIMITS values
local CUR = TAT + LIMITS           -- NH values
local PREV = CUR + NH              -- NH values
local MEAN = PREV + NH             -- NS values
local VAR = MEAN + NS              -- NS values
local NUM = VAR + NS               -- CHANNELS * NK values, channel-major
local DEN = NUM + CHANNELS * NK    -- CHANNELS * NK values
local STEPS = DEN + CHANNELS * NK  -- STEP_MEMORY step markers (0 = empty), a ring
local NEXT = STEPS + STEP_MEMORY   -- the ring position the next step is written to (0-based)
local WIDTH = NEXT
local STATE_FORMAT = "<" .. string.rep("d", WIDTH)

-- An answer's row: one table filled afresh for each answered observation and packed with a format
-- made once, where a table built, grown and measured (#row) for every row, and its format spelled
-- anew, were a good part of the script's time (bench/redis_script.py measures it).
local ROW_WIDTH = NH + 1 + 2 * NS + SKETCHES + 2 * CHANNELS * NK + 4
local ROW_FORMAT = "<" .. string.rep("d", ROW_WIDTH)
local row = {}

local ttl = tonumber(ARGV[1])
local out = {}
local answered = 0

local function fresh(now)
  local w = {}
  for i = 1, WIDTH do w[i] = 0.0 end
  w[LS], w[VS], w[LT], w[RT] = now, now, -1.0, now
  for j = 0, LIMITS - 1 do w[TAT + j] = -math.huge end
  return w
end

local function load(key)
  local packed = redis.call("GET", key)
  if not packed or #packed ~= WIDTH * 8 then return nil end
  local w = {struct.unpack(STATE_FORMAT, packed)}
  w[WIDTH + 1] = nil  -- struct.unpack also returns the next position
  return w
end

local function advance(w, when, sketch_keys)
  if when <= w[LS] then return w[LS] end
  local last = w[LS]
  for h = 1, NH do
    local inverse = INVERSE_HORIZONS[h]
    local passed = floor(when * inverse) - floor(last * inverse)
    if passed == 1 then
      w[PREV + h - 1] = w[CUR + h - 1]; w[CUR + h - 1] = 0.0
    elseif passed > 1 then
      w[PREV + h - 1] = 0.0; w[CUR + h - 1] = 0.0
    end
  end
  if when - last > VISIT_GAP then
    w[VS], w[LT], w[GAPS] = when, -1.0, 0.0
    for s = 0, NS - 1 do w[MEAN + s] = 0.0; w[VAR + s] = 0.0 end
    if w[MASK] ~= 0 then redis.call("DEL", sketch_keys[1], sketch_keys[2]) end
    w[MASK] = 0.0
    for i = STEPS, NEXT do w[i] = 0.0 end
  end
  w[LS] = when
  return when
end

local function power(base, exponent)
  local result = 1.0
  while exponent > 0 do
    if exponent % 2 == 1 then result = result * base end
    base = base * base
    exponent = floor(exponent / 2)
  end
  return result
end

-- Ratios decay lazily: exponential decay since they were last touched, one exp per update.
local function decay_ratios(w, at)
  local elapsed = at - w[RT]
  if elapsed <= 0.0 then return end
  w[RT] = at
  local base = exp(-elapsed * DECAY_BASE_RATE)
  for k = 1, NK do
    local factor = power(base, DECAY_POWERS[k])
    for c = 0, CHANNELS - 1 do
      local i = c * NK + k - 1
      w[NUM + i] = w[NUM + i] * factor
      w[DEN + i] = w[DEN + i] * factor
    end
  end
end

-- Generic cell rate algorithm over the observation's first n_limits limits (intervals[j],
-- bursts[j]: the ones it gives, in order, each on the j-th TAT); a refused event is not charged.
local function gcra(w, at, n_limits, intervals, bursts)
  local wait = 0.0
  for j = 1, n_limits do
    local allowed_at = max(w[TAT + j - 1], at) - intervals[j] * (bursts[j] - 1.0)
    -- GCRA_SLACK: sums of intervals drift by ulps; never refuse a burst for 1e-14 s
    if allowed_at - at > GCRA_SLACK and allowed_at - at > wait then wait = allowed_at - at end
  end
  if wait == 0.0 then
    for j = 1, n_limits do
      w[TAT + j - 1] = max(w[TAT + j - 1], at) + intervals[j]
    end
  end
  return wait
end

local function time_event(w, at)
  local previous = w[LT]
  w[LT] = at
  if previous < 0.0 then return end
  local gap = at - previous
  w[GAPS] = w[GAPS] + 1.0
  for s = 1, NS do
    local alpha = ALPHAS[s]
    local m, v = MEAN + s - 1, VAR + s - 1
    if w[GAPS] == 1.0 then
      w[m] = gap; w[v] = 0.0
    else
      local diff = gap - w[m]
      local step = alpha * diff
      w[m] = w[m] + step
      w[v] = (1.0 - alpha) * (w[v] + diff * step)
    end
  end
end

local function bit(mask, i)
  return floor(mask / POW2[i]) % 2 == 1
end

-- Remember a step marker in the ring; 1.0 when a step before it (marker - gap .. marker - 1, markers
-- only when >= 1) was already remembered and this one was not (a step forward, not a revisit).
local function take_step(w, marker, gap)
  local high = marker - 1
  local low = max(marker - gap, 1)
  local follows = 0.0
  if high > 0 then
    for i = 0, STEP_MEMORY - 1 do
      local remembered = w[STEPS + i]
      if remembered >= low and remembered <= high then follows = 1.0 end
    end
    for i = 0, STEP_MEMORY - 1 do
      if w[STEPS + i] == marker then follows = 0.0 end
    end
  end
  local position = w[NEXT]
  w[STEPS + position] = marker
  w[NEXT] = (position + 1) % STEP_MEMORY
  return follows
end

local n = (#ARGV - 1) / PER_OBS
local sketch_keys, items, intervals, bursts = {}, {}, {}, {}  -- refilled for each observation
for i = 0, n - 1 do
  local base = 2 + i * PER_OBS
  local state_key = KEYS[3 * i + 1]
  for s = 1, SKETCHES do
    sketch_keys[s] = KEYS[3 * i + 1 + s]
    items[s] = ARGV[base + s]
  end
  local v = {struct.unpack(NUMBERS_FORMAT, ARGV[base])}
  local now, answer, count, timing = v[1], v[2] == 1, v[3], v[4] == 1
  local seen, hits, marker = v[5], v[6], v[7]
  local n_limits = 0
  for j = 0, LIMITS - 1 do
    local interval = v[8 + 2 * j]
    if interval > 0 then
      n_limits = n_limits + 1
      intervals[n_limits], bursts[n_limits] = interval, v[9 + 2 * j]
    end
  end
  local follow = v[8 + 2 * LIMITS]
  local follow_hits = follow % 256
  local step_gap = floor(follow / 256) % 8 + 1

  local w = load(state_key)
  local at = now
  -- A pure lookup (no count, flags, step, items or limits) of a key without state answers an empty
  -- key's stats and writes nothing, as the kernels leave such a key without a slot.
  local lookup_only = w == nil and count == 0 and not timing and seen == 0 and hits == 0 and follow_hits == 0
    and marker == 0 and items[1] == "" and items[2] == "" and n_limits == 0
  if lookup_only then
    w = fresh(now)
  elseif w == nil then
    w = fresh(now)
    redis.call("DEL", sketch_keys[1], sketch_keys[2])
  else
    at = advance(w, now, sketch_keys)
  end
  local wait = gcra(w, at, n_limits, intervals, bursts)
  for h = 0, NH - 1 do w[CUR + h] = w[CUR + h] + count end
  w[TOT] = w[TOT] + count
  if seen ~= 0 or hits ~= 0 then
    decay_ratios(w, at)
    for c = 0, CHANNELS - 1 do
      local seen_c = bit(seen, c) and 1.0 or 0.0
      local hit_c = bit(hits, c) and 1.0 or 0.0
      for k = 0, NK - 1 do
        local idx = c * NK + k
        w[DEN + idx] = w[DEN + idx] + seen_c
        w[NUM + idx] = w[NUM + idx] + hit_c
      end
    end
  end
  if timing then time_event(w, at) end
  local mask = w[MASK]
  for s = 1, SKETCHES do
    if items[s] ~= "" then
      redis.call("PFADD", sketch_keys[s], items[s])
      if not bit(mask, s - 1) then mask = mask + POW2[s - 1] end
    end
  end
  w[MASK] = mask
  local follows = 0.0
  if marker > 0 then follows = take_step(w, marker, step_gap) end
  if follows > 0 and follow_hits ~= 0 then
    decay_ratios(w, at)
    for c = 0, CHANNELS - 1 do
      if bit(follow_hits, c) then
        for k = 0, NK - 1 do w[NUM + c * NK + k] = w[NUM + c * NK + k] + 1.0 end
      end
    end
  end
  decay_ratios(w, at)  -- the answer (and what is kept) is decayed to this event's time
  if not lookup_only then
    redis.call("SET", state_key, struct.pack(STATE_FORMAT, unpack(w, 1, WIDTH)), "EX", ttl)
    for s = 1, SKETCHES do  -- sketches live exactly as long as their state
      if bit(mask, s - 1) then redis.call("EXPIRE", sketch_keys[s], ttl) end
    end
  end

  if answer then
    local k = 0
    for h = 0, NH - 1 do
      local into = at * INVERSE_HORIZONS[h + 1]
      into = into - floor(into)
      k = k + 1; row[k] = w[CUR + h] + w[PREV + h] * (1.0 - into)
    end
    k = k + 1; row[k] = w[GAPS]
    for s = 0, NS - 1 do k = k + 1; row[k] = w[MEAN + s] end
    for s = 0, NS - 1 do k = k + 1; row[k] = sqrt(max(w[VAR + s], 0.0)) end
    for s = 1, SKETCHES do
      k = k + 1; row[k] = bit(mask, s - 1) and redis.call("PFCOUNT", sketch_keys[s]) or 0.0
    end
    for idx = 0, CHANNELS * NK - 1 do
      local den = w[DEN + idx]
      k = k + 1; row[k] = den > 0 and w[NUM + idx] / den or 0.0
    end
    for idx = 0, CHANNELS * NK - 1 do k = k + 1; row[k] = w[DEN + idx] end
    row[k + 1], row[k + 2], row[k + 3], row[k + 4] = wait, w[VS], w[TOT], follows
    answered = answered + 1
    out[answered] = struct.pack(ROW_FORMAT, unpack(row, 1, ROW_WIDTH))
  end
end
return table.concat(out)
