-- shieldware window observation, run atomically inside Redis: the same algorithm as the Numba
-- kernels (shieldware/windows/kernels.py; readable spec in shieldware/windows/reference.py),
-- except that distinct counts use Redis's own HyperLogLog (PFADD/PFCOUNT).
--
-- KEYS: for each observation i (0-based), three keys sharing one hash tag:
--   KEYS[3i+1] state hash, KEYS[3i+2] sketch 0, KEYS[3i+3] sketch 1
-- ARGV: ttl_seconds, then per observation
--   now, answer, count, timing, seen, hits, item0, item1, interval0, burst0, interval1, burst1
-- (answer 1 = return its stats row; 0 = feedback applied without an answer, piggybacked on a
-- request's call so that feedback costs no round trip of its own)
-- Returns: one flat list of numbers-as-strings, STATS_FIELDS per answered observation.

-- The window layout constants are written here by shieldware/store/redis.py from
-- shieldware/store/base.py, so Python and Lua cannot drift apart:
-- @CONSTANTS@
local PER_OBS = 12

local ttl = tonumber(ARGV[1])
local now = 0.0
local out = {}

local function num(value, default)
  if value == false or value == nil then return default end
  return tonumber(value)
end

local function fmt(x)
  return string.format("%.17g", x)
end

-- state fields, in one HMGET/HSET: ls vs lt t1 t2 c1..c4 p1..p4 tot g m1 m2 v1 v2 n11.. d11..
local fields = {"ls", "vs", "lt", "t1", "t2", "tot", "g", "rt"}
for h = 1, #HORIZONS do fields[#fields + 1] = "c" .. h; fields[#fields + 1] = "p" .. h end
for s = 1, #ALPHAS do fields[#fields + 1] = "m" .. s; fields[#fields + 1] = "v" .. s end
for c = 1, CHANNELS do
  for k = 1, #HALF_LIVES do
    fields[#fields + 1] = "n" .. c .. k; fields[#fields + 1] = "d" .. c .. k
  end
end

local function load(key)
  local values = redis.call("HMGET", key, unpack(fields))
  local w = {}
  for i, name in ipairs(fields) do w[name] = values[i] end
  if not w.ls then return nil end
  for i, name in ipairs(fields) do w[name] = num(values[i], 0.0) end
  -- GCRA times absent mean "never" (-inf), which a hash cannot store
  w.t1 = num(values[4], -math.huge)
  w.t2 = num(values[5], -math.huge)
  return w
end

local function fresh()
  local w = {ls = now, vs = now, lt = -1.0, t1 = -math.huge, t2 = -math.huge, tot = 0.0, g = 0.0, rt = now}
  for h = 1, #HORIZONS do w["c" .. h] = 0.0; w["p" .. h] = 0.0 end
  for s = 1, #ALPHAS do w["m" .. s] = 0.0; w["v" .. s] = 0.0 end
  for c = 1, CHANNELS do
    for k = 1, #HALF_LIVES do w["n" .. c .. k] = 0.0; w["d" .. c .. k] = 0.0 end
  end
  return w
end

local function save(key, w)
  local flat = {}
  for _, name in ipairs(fields) do
    local value = w[name]
    if value ~= -math.huge then
      flat[#flat + 1] = name; flat[#flat + 1] = fmt(value)
    end
  end
  redis.call("HSET", key, unpack(flat))
  redis.call("EXPIRE", key, ttl)
end

-- Advance a key's windows to `when`; returns the time the event counts at.
local function advance(w, when, sketch_keys)
  if when <= w.ls then return w.ls end
  local last = w.ls
  for h, inverse in ipairs(INVERSE_HORIZONS) do
    local passed = math.floor(when * inverse) - math.floor(last * inverse)
    if passed == 1 then
      w["p" .. h] = w["c" .. h]; w["c" .. h] = 0.0
    elseif passed > 1 then
      w["p" .. h] = 0.0; w["c" .. h] = 0.0
    end
  end
  if when - last > VISIT_GAP then
    w.vs = when; w.lt = -1.0; w.g = 0.0
    for s = 1, #ALPHAS do w["m" .. s] = 0.0; w["v" .. s] = 0.0 end
    redis.call("DEL", sketch_keys[1], sketch_keys[2])
  end
  w.ls = when
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
  local elapsed = at - w.rt
  if elapsed <= 0.0 then return end
  w.rt = at
  local base = math.exp(-elapsed * DECAY_BASE_RATE)
  for k, exponent in ipairs(DECAY_POWERS) do
    local factor = power(base, exponent)
    for c = 1, CHANNELS do
      w["n" .. c .. k] = w["n" .. c .. k] * factor
      w["d" .. c .. k] = w["d" .. c .. k] * factor
    end
  end
end

-- Generic cell rate algorithm; a refused event is not charged.
local function gcra(w, at, limits)
  local wait = 0.0
  for j, limit in ipairs(limits) do
    local tat = w["t" .. j]
    local allowed_at = math.max(tat, at) - limit[1] * (limit[2] - 1.0)
    -- GCRA_SLACK: sums of intervals drift by ulps; never refuse a burst for 1e-14 s
    if allowed_at - at > GCRA_SLACK and allowed_at - at > wait then wait = allowed_at - at end
  end
  if wait == 0.0 then
    for j, limit in ipairs(limits) do
      w["t" .. j] = math.max(w["t" .. j], at) + limit[1]
    end
  end
  return wait
end

local function time_event(w, at)
  local previous = w.lt
  w.lt = at
  if previous < 0.0 then return end
  local gap = at - previous
  w.g = w.g + 1.0
  for s, alpha in ipairs(ALPHAS) do
    if w.g == 1.0 then
      w["m" .. s] = gap; w["v" .. s] = 0.0
    else
      local diff = gap - w["m" .. s]
      local step = alpha * diff
      w["m" .. s] = w["m" .. s] + step
      w["v" .. s] = (1.0 - alpha) * (w["v" .. s] + diff * step)
    end
  end
end

local function bit(mask, i)
  return math.floor(mask / (2 ^ i)) % 2 == 1
end

local n = (#ARGV - 1) / PER_OBS
for i = 0, n - 1 do
  local base = 3 + i * PER_OBS
  local state_key = KEYS[3 * i + 1]
  local sketch_keys = {KEYS[3 * i + 2], KEYS[3 * i + 3]}
  now = tonumber(ARGV[base - 1])
  local answer = ARGV[base] == "1"
  local count = tonumber(ARGV[base + 1])
  local timing = ARGV[base + 2] == "1"
  local seen = tonumber(ARGV[base + 3])
  local hits = tonumber(ARGV[base + 4])
  local items = {ARGV[base + 5], ARGV[base + 6]}
  local limits = {}
  for j = 0, LIMITS - 1 do
    local interval = tonumber(ARGV[base + 7 + 2 * j])
    if interval > 0 then limits[#limits + 1] = {interval, tonumber(ARGV[base + 8 + 2 * j])} end
  end

  local w = load(state_key)
  local at = now
  if w == nil then
    w = fresh()
    redis.call("DEL", sketch_keys[1], sketch_keys[2])
  else
    at = advance(w, now, sketch_keys)
  end
  local wait = gcra(w, at, limits)
  for h = 1, #HORIZONS do w["c" .. h] = w["c" .. h] + count end
  w.tot = w.tot + count
  if seen ~= 0 or hits ~= 0 then decay_ratios(w, at) end
  for c = 1, CHANNELS do
    local seen_c = bit(seen, c - 1) and 1.0 or 0.0
    local hit_c = bit(hits, c - 1) and 1.0 or 0.0
    for k = 1, #HALF_LIVES do
      w["d" .. c .. k] = w["d" .. c .. k] + seen_c
      w["n" .. c .. k] = w["n" .. c .. k] + hit_c
    end
  end
  if timing then time_event(w, at) end
  for s = 1, SKETCHES do
    if items[s] ~= "" then redis.call("PFADD", sketch_keys[s], items[s]) end
    redis.call("EXPIRE", sketch_keys[s], ttl)  -- sketches live exactly as long as their state
  end
  decay_ratios(w, at)  -- the answer (and what is kept) is decayed to this event's time
  save(state_key, w)

  if answer then
    for h, inverse in ipairs(INVERSE_HORIZONS) do
      local into = at * inverse
      into = into - math.floor(into)
      out[#out + 1] = fmt(w["c" .. h] + w["p" .. h] * (1.0 - into))
    end
    out[#out + 1] = fmt(w.g)
    for s = 1, #ALPHAS do out[#out + 1] = fmt(w["m" .. s]) end
    for s = 1, #ALPHAS do out[#out + 1] = fmt(math.sqrt(math.max(w["v" .. s], 0.0))) end
    for s = 1, SKETCHES do out[#out + 1] = fmt(redis.call("PFCOUNT", sketch_keys[s])) end
    for c = 1, CHANNELS do
      for k = 1, #HALF_LIVES do
        local den = w["d" .. c .. k]
        out[#out + 1] = fmt(den > 0 and w["n" .. c .. k] / den or 0.0)
      end
    end
    for c = 1, CHANNELS do
      for k = 1, #HALF_LIVES do out[#out + 1] = fmt(w["d" .. c .. k]) end
    end
    out[#out + 1] = fmt(wait)
    out[#out + 1] = fmt(w.vs)
    out[#out + 1] = fmt(w.tot)
  end
end
return out
