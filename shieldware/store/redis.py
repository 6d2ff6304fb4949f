"""redis:// — the shared store: window state computed atomically inside Redis by one Lua script.

Many processes and machines see one view of traffic. Semantics are those of the memory store's
Numba kernels (shieldware/store/windows.lua follows shieldware/windows/reference.py step for
step), except distinct counts, which use Redis's own HyperLogLog (PFADD/PFCOUNT, ~0.8 % error
instead of the memory sketch's ~13 %).

Cost per request: at most one EVALSHA round trip on a single Redis (all of a request's keys in
one script call), one concurrent EVALSHA per hash slot on a cluster; requests that reach the
store in the same turn of the event loop share that call (`_Gathering`). Outcome feedback
(`record`) costs no round trip of its own: it is queued and applied inside the next script call
(or flushed after `flush_after` seconds when traffic is idle).

Failures never hang or fail a request: every call is bounded by `timeout`, a circuit breaker
stops calling a Redis that keeps failing, and the engine applies the route group's
`on_store_failure` (serve, challenge or 503) while `StoreUnavailable` is raised.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import struct
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError

from shieldware.store import base
from shieldware.store.base import (
    DISTINCT_SKETCHES,
    MAX_LIMITS,
    Observation,
    StoreUnavailable,
    WindowStats,
    follow_arg,
    shown_uri,
    step_marker,
)

log = logging.getLogger("shieldware.store.redis")

# A call's budget includes the event loop's own delay: on a saturated server a tighter budget fails
# calls to a healthy Redis (and fail-closed groups would then refuse people for nothing).
DEFAULT_TIMEOUT = 0.25
DEFAULT_TTL = 7200
FIRST_CALL_TIMEOUT = 2.0
MAX_KEY_LENGTH = 200
# An observation's numbers as the window script unpacks them (windows.lua, PER_OBS): now, answer,
# count, timing, seen, hits, step marker, then (interval, burst) for each of the MAX_LIMITS limits
# (0, 0 for none), then follow.
_NUMBERS = struct.Struct("<" + "d" * (7 + 2 * MAX_LIMITS + 1))
_OUR_OPTIONS = ("timeout", "ttl", "prefix", "breaker_failures", "breaker_cooldown", "gather")


def _lua_constants() -> str:
    """The window layout of shieldware/store/base.py, as Lua locals."""
    alphas = ", ".join(repr(2.0 / (span + 1.0)) for span in base.TIMING_SPANS)
    from shieldware.windows import layout

    return "\n".join([
        f"local HORIZONS = {{{', '.join(repr(float(h)) for h in base.COUNTER_HORIZONS)}}}",
        f"local INVERSE_HORIZONS = {{{', '.join(repr(1.0 / h) for h in base.COUNTER_HORIZONS)}}}",
        f"local DECAY_BASE_RATE = {layout.DECAY_BASE_RATE!r}",
        f"local DECAY_POWERS = {{{', '.join(str(p) for p in layout.DECAY_POWERS)}}}",
        f"local ALPHAS = {{{alphas}}}",
        f"local HALF_LIVES = {{{', '.join(repr(float(h)) for h in base.RATIO_HALF_LIVES)}}}",
        f"local CHANNELS = {base.RATIO_CHANNELS}",
        f"local SKETCHES = {DISTINCT_SKETCHES}",
        f"local LIMITS = {MAX_LIMITS}",
        f"local STEP_MEMORY = {base.STEP_MEMORY}",
        f"local VISIT_GAP = {float(base.VISIT_GAP)!r}",
        f"local GCRA_SLACK = {layout.GCRA_SLACK!r}",
    ])


def window_script() -> str:
    source = resources.files("shieldware.store").joinpath("windows.lua").read_text(encoding="utf-8")
    return source.replace("-- @CONSTANTS@", _lua_constants())


# Single use within the claim's own (logical) lifetime: a claim whose `until` has passed at the
# caller's `now` may be taken again, as in the memory store; Redis's PX only cleans up.
CLAIM_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


class CircuitBreaker:
    """Stop calling a store that keeps failing; try again after a cool-down.

    Closed: calls go through. After `failures` consecutive failures it opens: calls fail at once
    (no connect attempt, no timeout to wait for) until `cooldown` seconds pass; then one call is
    let through (half-open) and its outcome closes or re-opens the breaker. Uses the monotonic
    clock: this is about the network, not about the requests' time.
    """

    def __init__(self, failures: int = 3, cooldown: float = 1.0) -> None:
        self.failures_to_open = failures
        self.cooldown = cooldown
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.trial_running = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at < self.cooldown or self.trial_running:
            return False
        self.trial_running = True
        return True

    def succeeded(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        self.trial_running = False

    def failed(self) -> None:
        self.consecutive_failures += 1
        self.trial_running = False
        if self.opened_at is not None or self.consecutive_failures >= self.failures_to_open:
            self.opened_at = time.monotonic()


class _Gathering:
    """Observations of several requests sent in one script call.

    Under load many requests reach the store in one turn of the event loop; each sending its own
    EVALSHA costs a round trip and, in redis-py, tens of µs of Python per call. The first request
    of a turn starts a gathering and schedules its sending for the loop's next turn; those that
    follow in the same turn add theirs. The script applies the observations in order, each at its
    own time, exactly as separate calls in that order would, and each request gets its own slice of
    the answers."""

    __slots__ = ("answers", "batch", "sender")

    def __init__(self, answers: asyncio.Future) -> None:
        self.batch: list[tuple[Observation, float, bool]] = []
        self.answers = answers
        self.sender: asyncio.Task | None = None


def _entity_tag(kind: str, key: str) -> str:
    """The hash tag that keeps one entity's keys on one cluster slot; long keys are hashed."""
    if len(key) > MAX_KEY_LENGTH:
        key = "h:" + hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=16).hexdigest()
    return f"{kind}:{key}".replace("{", "(").replace("}", ")")


class RedisStore:
    """The Store protocol on Redis (single server, TLS, Sentinel or Cluster), async, pooled."""

    def __init__(self, uri: str, client: Any = None) -> None:
        self.uri = uri
        self.shown = shown_uri(uri)  # what errors say: they reach decision logs, passwords must not
        self.last_failure = ""  # why the last call failed, told while the breaker keeps calls off
        options, self.mode, client_factory = parse_redis_uri(uri)
        self.timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        self.ttl = int(options.get("ttl", DEFAULT_TTL))
        self.prefix = options.get("prefix", "sw")
        self.breaker = CircuitBreaker(int(options.get("breaker_failures", 3)),
                                      float(options.get("breaker_cooldown", 1.0)))
        self.client = client if client is not None else client_factory(self.timeout)
        self.scripts = {"windows": window_script(), "claim": CLAIM_SCRIPT}
        self.shas: dict[str, str] = {}
        self.flush_after = 0.1
        self._pending: list[tuple[Observation, float]] = []
        self._flush_task: asyncio.Task | None = None
        self._gathering: _Gathering | None = None  # the observations this turn of the loop gathers
        self.gather = options.get("gather", "on") == "on"
        self._ready = False
        self.calls = 0  # network calls made, for the benchmark's commands-per-request figure

    # ---- keys ---------------------------------------------------------------------------------

    def _window_keys(self, observation: Observation) -> list[str]:
        tag = _entity_tag(observation.kind, observation.key)
        return [f"{self.prefix}:{{{tag}}}:w", f"{self.prefix}:{{{tag}}}:h0", f"{self.prefix}:{{{tag}}}:h1"]

    def _record_key(self, kind: str, key: str) -> str:
        return f"{self.prefix}:{{rec:{kind}}}:{key}"

    def _record_index(self, kind: str) -> str:
        return f"{self.prefix}:{{rec:{kind}}}:index"

    def _once_key(self, kind: str, key: str) -> str:
        return f"{self.prefix}:{{once:{_entity_tag(kind, key)}}}"

    # ---- calls with timeout and breaker -------------------------------------------------------

    async def _guarded(self, action: Any, what: str) -> Any:
        if not self.breaker.allow():
            raise StoreUnavailable(f"redis store {self.shown}: circuit open after repeated failures "
                                   f"(last: {self.last_failure})")
        # The first call also connects (and on a cluster discovers the slot map and loads the
        # script on every primary): it gets a larger budget than a steady-state call.
        budget = self.timeout if self._ready else max(self.timeout, FIRST_CALL_TIMEOUT)
        try:
            async with asyncio.timeout(budget):
                result = await action()
        except (RedisError, OSError, TimeoutError) as exc:
            self.breaker.failed()
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            self.last_failure = f"{what} failed ({reason})"
            raise StoreUnavailable(f"redis store {self.shown}: {self.last_failure}") from exc
        self.breaker.succeeded()
        self._ready = True
        return result

    async def _evalsha(self, keys: list[str], args: list[Any], script: str = "windows") -> Any:
        self.calls += 1
        sha = self.shas.get(script)
        if sha is None:
            sha = self.shas[script] = await self.client.script_load(self.scripts[script])
        try:
            return await self.client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted or flushed its script cache: load once more
            sha = self.shas[script] = await self.client.script_load(self.scripts[script])
            return await self.client.evalsha(sha, len(keys), *keys, *args)

    # ---- windows --------------------------------------------------------------------------------

    @staticmethod
    def _args(observation: Observation, now: float, answer: bool) -> list[bytes | str]:
        """An observation as the script takes it: its numbers packed as little-endian doubles in one
        string (see _NUMBERS), then its DISTINCT_SKETCHES items ("" for none). Few, long arguments:
        redis-py encodes each argument in Python, and a request's 85 separate ones cost it some
        45 µs (of 290, in process), its 30 now about a third of that."""
        items = ["" if d is None else str(d) for d in observation.distinct[:DISTINCT_SKETCHES]]
        items += [""] * (DISTINCT_SKETCHES - len(items))
        limits: list[float] = []
        for rate in observation.limits[:MAX_LIMITS]:
            limits += (rate.period / rate.count, rate.count)
        limits += (0.0, 0.0) * (MAX_LIMITS - len(limits) // 2)
        marker = step_marker(observation.step)
        numbers = _NUMBERS.pack(now, answer, observation.count, observation.timing, observation.seen & 0xFF,
                                observation.hits & 0xFF, marker, *limits,
                                follow_arg(observation.follow_hits, observation.step_gap, marker))
        return [numbers, *items]

    def _calls_for(self, batch: list[tuple[Observation, float, bool]]) -> list[tuple[list, list, list[int]]]:
        """One script call for everything on a single server; one per hash slot on a cluster.

        Each call also lists which answered observations (by position among the answered ones)
        its rows belong to, so answers come back in request order whatever the slots.
        """
        groups: dict[int, tuple[list[str], list[Any], list[int]]] = {}
        answered = 0
        for observation, now, answer in batch:
            keys = self._window_keys(observation)
            slot = key_slot(keys[0].encode()) if self.mode == "cluster" else 0
            group = groups.setdefault(slot, ([], [self.ttl], []))
            group[0].extend(keys)
            group[1].extend(self._args(observation, now, answer))
            if answer:
                group[2].append(answered)
                answered += 1
        return list(groups.values())

    async def _run(self, batch: list[tuple[Observation, float, bool]]) -> list[WindowStats]:
        calls = self._calls_for(batch)
        width = len(base.STATS_FIELDS)

        async def run_all() -> list:
            return await asyncio.gather(*(self._evalsha(keys, args) for keys, args, _ in calls))

        results = await self._guarded(run_all, "observe")
        answers: list[WindowStats | None] = [None] * sum(len(order) for _, _, order in calls)
        for (_, _, order), packed in zip(calls, results, strict=True):
            rows = struct.unpack(f"<{len(packed) // 8}d", packed)  # the script's doubles, bit for bit
            for n, position in enumerate(order):
                answers[position] = WindowStats(rows[n * width:(n + 1) * width])
        return answers  # type: ignore[return-value]

    async def observe(self, observations: Sequence[Observation], now: float) -> list[WindowStats]:
        """Every window of these observations, updated and answered. Requests that ask in the same
        turn of the event loop share one script call (see `_Gathering`)."""
        if not observations and not self._pending:
            return []
        if not self.gather:
            return await self._after_feedback([(o, now, True) for o in observations])
        gathering = self._gathering
        if gathering is None:
            gathering = self._gathering = _Gathering(asyncio.get_running_loop().create_future())
            # A task's first step runs in the loop's next turn, after every request already
            # scheduled in this one has reached its own observe. Held: the loop holds tasks weakly.
            gathering.sender = asyncio.get_running_loop().create_task(self._send(gathering))
        start = len(gathering.batch)
        gathering.batch.extend((o, now, True) for o in observations)
        # Shielded: a request cancelled while waiting (its client hung up) must not cancel the
        # call the others wait for.
        answers = await asyncio.shield(gathering.answers)
        return answers[start:start + len(observations)]

    async def _send(self, gathering: _Gathering) -> None:
        self._gathering = None  # who asks from now on waits for the next call
        try:
            answers = await self._after_feedback(gathering.batch)
        except StoreUnavailable as exc:
            gathering.answers.set_exception(exc)
            gathering.answers.exception()  # retrieved: a gathering nobody waits for any more is not an error
            return
        except BaseException as exc:  # cancelled at shutdown, or a bug: the waiters must not hang
            gathering.answers.set_exception(StoreUnavailable(f"redis store {self.shown}: observe failed ({exc!r})"))
            gathering.answers.exception()
            raise
        gathering.answers.set_result(answers)

    async def _after_feedback(self, batch: list[tuple[Observation, float, bool]]) -> list[WindowStats]:
        """`batch` sent after the queued feedback, which is kept for later if Redis fails."""
        pending, self._pending = self._pending, []
        try:
            return await self._run([(o, at, False) for o, at in pending] + batch)
        except StoreUnavailable:
            self._pending = pending[-10_000:] + self._pending
            raise

    async def record(self, observations: Sequence[Observation], now: float) -> None:
        """Queue outcome feedback; it rides along with the next request's script call."""
        self._pending.extend((o, now) for o in observations)
        if len(self._pending) > 50_000:  # Redis gone for long: drop the oldest, keep memory bounded
            del self._pending[: len(self._pending) - 50_000]
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_after)
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            await self._run([(o, at, False) for o, at in pending])
        except StoreUnavailable as exc:
            log.warning("feedback not applied, redis unavailable: %s", exc)

    async def flush(self) -> None:
        """Apply queued feedback now (tests and shutdown)."""
        pending, self._pending = self._pending, []
        if pending:
            await self._run([(o, at, False) for o, at in pending])

    # ---- records --------------------------------------------------------------------------------

    # Records carry their logical expiry (`until`, in the callers' time) and are checked against the
    # caller's `now`, like the memory store; Redis's own TTL (PX) only cleans them up.

    async def put_record(self, kind: str, key: str, value: dict, ttl: float | None, now: float) -> None:
        record_key, index = self._record_key(kind, key), self._record_index(kind)
        until = None if ttl is None else now + ttl
        body = json.dumps({"v": value, "until": until}, separators=(",", ":"))

        async def put() -> None:
            async with self.client.pipeline(transaction=self.mode != "cluster") as pipe:
                if ttl is None:
                    pipe.set(record_key, body)
                else:
                    pipe.set(record_key, body, px=max(1, int(ttl * 1000)))
                pipe.zadd(index, {key: math.inf if until is None else until})
                await pipe.execute()

        await self._guarded(put, "put_record")

    @staticmethod
    def _alive(raw: bytes | str | None, now: float) -> dict | None:
        if not raw:
            return None
        record = json.loads(raw)
        until = record.get("until")
        return record["v"] if until is None or until > now else None

    async def get_record(self, kind: str, key: str, now: float) -> dict | None:
        raw = await self._guarded(lambda: self.client.get(self._record_key(kind, key)), "get_record")
        return self._alive(raw, now)

    async def delete_record(self, kind: str, key: str) -> bool:
        async def delete() -> bool:
            async with self.client.pipeline(transaction=self.mode != "cluster") as pipe:
                pipe.delete(self._record_key(kind, key))
                pipe.zrem(self._record_index(kind), key)
                removed, _ = await pipe.execute()
            return bool(removed)

        return await self._guarded(delete, "delete_record")

    async def list_records(self, kind: str, now: float) -> dict[str, dict]:
        index = self._record_index(kind)

        async def listing() -> dict[str, dict]:
            await self.client.zremrangebyscore(index, "-inf", f"({now}")
            keys = [k.decode() if isinstance(k, bytes) else k for k in await self.client.zrange(index, 0, -1)]
            if not keys:
                return {}
            values = await self.client.mget([self._record_key(kind, k) for k in keys])
            alive = {k: self._alive(v, now) for k, v in zip(keys, values, strict=True)}
            return {k: v for k, v in alive.items() if v is not None}

        return await self._guarded(listing, "list_records")

    async def claim_once(self, kind: str, key: str, ttl: float, now: float) -> bool:
        async def claim() -> bool:
            args = [repr(float(now)), repr(float(now + ttl)), max(1, int(ttl * 1000))]
            return bool(await self._evalsha([self._once_key(kind, key)], args, script="claim"))

        return await self._guarded(claim, "claim_once")

    async def health(self) -> dict[str, Any]:
        """A PING through the requests' own timeout and breaker: while the breaker is open nothing
        is sent (the health page must not hammer a Redis that is down), and a PING that works
        after the cool-down closes it, as a request's call would."""
        answer: dict[str, Any] = {"kind": "redis", "uri": self.shown, "reachable": True}
        try:
            await self._guarded(self.client.ping, "ping")
        except StoreUnavailable as exc:
            answer.update(reachable=False, error=str(exc), breaker=self.breaker.state)
        return answer

    async def close(self) -> None:
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()
        try:
            await self.flush()
        except StoreUnavailable:
            pass
        close = getattr(self.client, "aclose", None) or self.client.close
        await close()


def parse_redis_uri(uri: str) -> tuple[dict[str, str], str, Any]:
    """Split a store URI into our options, the mode, and a factory for the redis-py client.

    redis://[:password@]host:port/db, rediss://… (TLS), unix:///path.sock,
    redis+cluster://host:port,host:port, redis+sentinel://host:port,host:port/service[/db].
    Our options ride in the query: timeout (seconds), ttl, prefix, breaker_failures, breaker_cooldown,
    gather (on: requests of one event-loop turn share a call; off: one call each, the benchmark's
    baseline).
    """
    parts = urlsplit(uri)
    named = shown_uri(uri)  # how errors name it: a password stays out of logs and terminals
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    options = {k: v[-1] for k, v in query.items() if k in _OUR_OPTIONS}
    passthrough = "&".join(f"{k}={v[-1]}" for k, v in query.items() if k not in _OUR_OPTIONS)
    for name in ("timeout", "breaker_cooldown"):
        if name in options:
            _positive_float(named, name, options[name])
    for name in ("ttl", "breaker_failures"):
        if name in options:
            _positive_int(named, name, options[name])
    if options.get("gather", "on") not in ("on", "off"):
        raise ValueError(f"store URI {named!r}: gather must be on or off, got {options['gather']!r}")
    if "db" in query:
        _database(named, query["db"][-1])
    if scheme in ("redis", "rediss", "unix"):
        _check_single(named, scheme, parts)
        plain = uri.split("?", 1)[0] + (f"?{passthrough}" if passthrough else "")

        def single(timeout: float) -> Any:
            return aioredis.from_url(plain, socket_timeout=timeout, socket_connect_timeout=timeout,
                                     retry_on_timeout=False, decode_responses=False)

        return options, "single", single
    nodes = [_host_port(named, hp) for hp in parts.netloc.rsplit("@", 1)[-1].split(",") if hp]
    if not nodes:
        raise ValueError(f"store URI {named!r}: expected at least one host:port")
    password = unquote(parts.password) if parts.password else None
    if scheme in ("redis+cluster", "rediss+cluster"):

        def cluster(timeout: float) -> Any:
            return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], password=password,
                                ssl=scheme.startswith("rediss"), socket_timeout=timeout,
                                socket_connect_timeout=timeout, decode_responses=False)

        return options, "cluster", cluster
    if scheme == "redis+sentinel":
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError(f"store URI {named!r}: expected the sentinel service name as the path")
        service, db = path[0], _database(named, path[1]) if len(path) > 1 else 0

        def sentinel(timeout: float) -> Any:
            from redis.asyncio.sentinel import Sentinel

            watcher = Sentinel(nodes, socket_timeout=timeout, socket_connect_timeout=timeout)
            return watcher.master_for(service, db=db, password=password, socket_timeout=timeout,
                                      socket_connect_timeout=timeout)

        return options, "single", sentinel
    raise ValueError(f"unknown store URI scheme in {named!r}: expected redis://, rediss://, unix://, "
                     "redis+cluster:// or redis+sentinel://")


def _check_single(uri: str, scheme: str, parts: SplitResult) -> None:
    """What redis-py would only find out on connecting, or would quietly read as database 0."""
    if scheme == "unix":
        if not parts.path:
            raise ValueError(f"store URI {uri!r}: expected the socket's path, as in unix:///run/redis.sock")
        return
    try:
        parts.port  # noqa: B018 (urllib checks the port when it is read)
    except ValueError:
        raise ValueError(f"store URI {uri!r}: the port must be a number from 0 to 65535") from None
    if parts.path.strip("/"):
        _database(uri, parts.path.strip("/"))


def _database(uri: str, text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"store URI {uri!r}: the database must be a number such as 0, got {text!r}")
    return int(text)


def _positive_int(uri: str, name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"store URI {uri!r}: {name} must be a whole number of at least 1, got {value!r}")
    return int(value)


def _host_port(uri: str, text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"store URI {uri!r}: {text!r} is not host:port")
    return host.strip("[]"), int(port)


def _positive_float(uri: str, name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"store URI {uri!r}: {name} must be a number of seconds, got {value!r}") from None
    if not number > 0:
        raise ValueError(f"store URI {uri!r}: {name} must be positive, got {value!r}")
    return number
