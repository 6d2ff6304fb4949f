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

local ttl = tonumber(ARGV[1])
local out = {}

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
    local passed = math.floor(when * inverse) - math.floor(last * inverse)
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
    exponent = math.floor(exponent / 2)
  end
  return result
end

-- Ratios decay lazily: exponential decay since they were last touched, one exp per update.
local function decay_ratios(w, at)
  local elapsed = at - w[RT]
  if elapsed <= 0.0 then return end
  w[RT] = at
  local base = math.exp(-elapsed * DECAY_BASE_RATE)
  for k = 1, NK do
    local factor = power(base, DECAY_POWERS[k])
    for c = 0, CHANNELS - 1 do
      local i = c * NK + k - 1
      w[NUM + i] = w[NUM + i] * factor
      w[DEN + i] = w[DEN + i] * factor
    end
  end
end

-- Generic cell rate algorithm; a refused event is not charged.
local function gcra(w, at, limits)
  local wait = 0.0
  for j, limit in ipairs(limits) do
    local allowed_at = math.max(w[TAT + j - 1], at) - limit[1] * (limit[2] - 1.0)
    -- GCRA_SLACK: sums of intervals drift by ulps; never refuse a burst for 1e-14 s
    if allowed_at - at > GCRA_SLACK and allowed_at - at > wait then wait = allowed_at - at end
  end
  if wait == 0.0 then
    for j, limit in ipairs(limits) do
      w[TAT + j - 1] = math.max(w[TAT + j - 1], at) + limit[1]
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
  return math.floor(mask / (2 ^ i)) % 2 == 1
end

-- Remember a step marker in the ring; 1.0 when a step before it (marker - gap .. marker - 1, markers
-- only when >= 1) was already remembered and this one was not (a step forward, not a revisit).
local function take_step(w, marker, gap)
  local high = marker - 1
  local low = math.max(marker - gap, 1)
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
for i = 0, n - 1 do
  local base = 2 + i * PER_OBS
  local state_key = KEYS[3 * i + 1]
  local sketch_keys = {KEYS[3 * i + 2], KEYS[3 * i + 3]}
  local v = {struct.unpack(NUMBERS_FORMAT, ARGV[base])}
  local now, answer, count, timing = v[1], v[2] == 1, v[3], v[4] == 1
  local seen, hits, marker = v[5], v[6], v[7]
  local items = {}
  for s = 1, SKETCHES do items[s] = ARGV[base + s] end
  local limits = {}
  for j = 0, LIMITS - 1 do
    local interval = v[8 + 2 * j]
    if interval > 0 then limits[#limits + 1] = {interval, v[9 + 2 * j]} end
  end
  local follow = v[8 + 2 * LIMITS]
  local follow_hits = follow % 256
  local step_gap = math.floor(follow / 256) % 8 + 1

  local w = load(state_key)
  local at = now
  -- A pure lookup (no count, flags, step, items or limits) of a key without state answers an empty
  -- key's stats and writes nothing, as the kernels leave such a key without a slot.
  local lookup_only = w == nil and count == 0 and not timing and seen == 0 and hits == 0 and follow_hits == 0
    and marker == 0 and items[1] == "" and items[2] == "" and #limits == 0
  if lookup_only then
    w = fresh(now)
  elseif w == nil then
    w = fresh(now)
    redis.call("DEL", sketch_keys[1], sketch_keys[2])
  else
    at = advance(w, now, sketch_keys)
  end
  local wait = gcra(w, at, limits)
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
      if not bit(mask, s - 1) then mask = mask + 2 ^ (s - 1) end
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
    local row = {}
    for h = 0, NH - 1 do
      local into = at * INVERSE_HORIZONS[h + 1]
      into = into - math.floor(into)
      row[#row + 1] = w[CUR + h] + w[PREV + h] * (1.0 - into)
    end
    row[#row + 1] = w[GAPS]
    for s = 0, NS - 1 do row[#row + 1] = w[MEAN + s] end
    for s = 0, NS - 1 do row[#row + 1] = math.sqrt(math.max(w[VAR + s], 0.0)) end
    for s = 1, SKETCHES do
      row[#row + 1] = bit(mask, s - 1) and redis.call("PFCOUNT", sketch_keys[s]) or 0.0
    end
    for idx = 0, CHANNELS * NK - 1 do
      local den = w[DEN + idx]
      row[#row + 1] = den > 0 and w[NUM + idx] / den or 0.0
    end
    for idx = 0, CHANNELS * NK - 1 do row[#row + 1] = w[DEN + idx] end
    row[#row + 1] = wait
    row[#row + 1] = w[VS]
    row[#row + 1] = w[TOT]
    row[#row + 1] = follows
    out[#out + 1] = struct.pack("<" .. string.rep("d", #row), unpack(row))
  end
end
return table.concat(out)
