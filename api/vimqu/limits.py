"""VimQu limits: requests per minute per token (429) and credits (402).

**Rate limit**: at most ``vimqu_rate_limit_per_minute`` requests (default 60, as seed 003
says) per token in any 60 s window (a sliding window of request times); the 429 answer's
``Retry-After`` says in how many seconds a request is accepted again. With ``redis_url``
set (``DRAGONFLOW_REDIS_URL``) the window is kept in Redis, so every API process counts the
same requests: one sorted set per token (its key holds a hash of the token, never the token),
trimmed, counted and added to by one Lua script on Redis's clock. Without it, or while Redis
cannot be reached (a warning is logged), each process counts its own requests.

**Credits** are output minutes: a task spends, per output that started, one credit per
started minute of its input (a 61 s input with 3 outputs spends 6). An account is granted
``credits_minutes`` (``dragonflow account credits NAME MINUTES``; a new account starts with
``vimqu_initial_credits_minutes``) at ``credits_since``; what is left is the grant minus what
the account's tasks created since then spend, counted from the tasks' runs themselves (no
second ledger that could drift from them, whatever number of API processes):

- a task being created reserves its estimate: one minute per output (the input's duration
  is not known before the flow probes it); with fewer credits left than that, **402**;
- a queued or running task counts its estimate (tag ``credits:N`` of its run);
- an ended task counts what it spent: per output that started, the started minutes of the
  input when its result reports the input's ``duration`` (seconds), else its estimate; a
  task canceled or refused before any output started spends nothing.

Ended tasks' charges are remembered by the API process (they never change), so counting
reads only the account's runs, not their artifacts, after the first time.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from collections import deque
from datetime import datetime
from typing import Any
from uuid import UUID

import redis.asyncio as redis
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterExpectedStartTime, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun
from redis.exceptions import RedisError

from api.vimqu.errors import too_many
from blocks.account import AccountBlock
from flows.contract.runs import ACCOUNT_TAG, MAX_READ, SURFACE_TAG, Phase, RunView, read_runs, tag_value
from flows.settings import get_settings

WINDOW = 60.0
SURFACE = "vimqu"
CREDITS_TAG = "credits:"
MINUTES_PER_OUTPUT = 1
logger = logging.getLogger("dragonflow.vimqu.limits")


class LocalWindow:
    """Requests per token in the last ``window`` seconds, counted by this process."""

    def __init__(self, per_minute: int, window: float = WINDOW):
        self.per_minute, self.window = per_minute, window
        self._hits: dict[str, deque[float]] = {}

    def _window(self, token: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(token, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def hit(self, token: str) -> float:
        """Count one request; 0, or the seconds to wait when ``per_minute`` were made."""
        now = time.monotonic()
        hits = self._window(token, now)
        if len(hits) >= self.per_minute:
            return hits[0] + self.window - now
        hits.append(now)
        if len(self._hits) > 10_000:  # forget idle tokens
            for idle in [t for t, h in self._hits.items() if not h or h[-1] <= now - self.window]:
                del self._hits[idle]
        return 0.0

    def count(self, token: str) -> int:
        return len(self._window(token, time.monotonic()))


# KEYS[1] the token's sorted set; ARGV: limit, window (ms), a new member ('' only counts).
# Returns {requests in the window, ms to wait (0: counted)}.
WINDOW_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if ARGV[3] == '' then return {count, 0} end
if count >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {count, math.max(1, tonumber(oldest[2]) + window - now)}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {count + 1, 0}
"""
REDIS_PREFIX = "dragonflow:vimqu:rate:"
REDIS_TIMEOUT = 2.0


class RedisWindow:
    """The same window kept in Redis: shared by every API process using ``url``."""

    def __init__(self, url: str, per_minute: int, window: float = WINDOW):
        self.per_minute, self.window = per_minute, window
        self.client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT)
        self._script = self.client.register_script(WINDOW_SCRIPT)

    @staticmethod
    def key(token: str) -> str:
        return REDIS_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:32]

    async def _call(self, token: str, member: str) -> tuple[int, float]:
        count, wait_ms = await self._script(keys=[self.key(token)],
                                            args=[self.per_minute, int(self.window * 1000), member])
        return int(count), int(wait_ms) / 1000

    async def hit(self, token: str) -> float:
        return (await self._call(token, uuid.uuid4().hex))[1]

    async def count(self, token: str) -> int:
        return (await self._call(token, ""))[0]


class RateLimiter:
    """Requests per token per minute: in Redis when ``redis_url`` is set (shared by the API
    processes), else (and while Redis is unreachable) in this process."""

    def __init__(self, per_minute: int | None = None, redis_url: str | None = None, window: float = WINDOW):
        settings = get_settings()
        self.per_minute = per_minute or settings.vimqu_rate_limit_per_minute
        url = redis_url or settings.redis_url
        self.local = LocalWindow(self.per_minute, window)
        self.shared = RedisWindow(url, self.per_minute, window) if url else None
        self._warned = False

    async def _counted(self, call: str, token: str) -> float:
        if self.shared is not None:
            try:
                value = await getattr(self.shared, call)(token)
                self._warned = False
                return value
            except (RedisError, OSError) as exc:
                if not self._warned:
                    self._warned = True
                    logger.warning("rate limit counted by this process only: Redis cannot be reached (%s)",
                                   type(exc).__name__)
        return getattr(self.local, call)(token)

    async def hit(self, token: str) -> None:
        """Count one request of ``token``, or 429 when it made ``per_minute`` already."""
        wait = await self._counted("hit", token)
        if wait > 0:
            raise too_many(max(1, math.ceil(wait)), self.per_minute)

    async def remaining(self, token: str) -> int:
        return max(0, self.per_minute - int(await self._counted("count", token)))

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.client.aclose()


def estimate(outputs: list[Any]) -> int:
    """Credits a new task reserves: one minute per output."""
    return MINUTES_PER_OUTPUT * len(outputs)


def reserved(run: FlowRun) -> float:
    """The estimate a run was created with (its ``credits:`` tag)."""
    value = tag_value(run, CREDITS_TAG)
    try:
        return float(value) if value is not None else float(estimate((run.parameters.get("params") or {})
                                                                       .get("outputs") or []))
    except ValueError:
        return 0.0


def charge(view: RunView) -> float:
    """What a run spends (see the module's docstring)."""
    run = view.run
    result = view.result if isinstance(view.result, dict) else {}
    reported = result.get("outputs") or {}
    outputs = (run.parameters.get("params") or {}).get("outputs") or []
    started = [o for o in outputs if isinstance(o, dict) and o.get("id") in reported]
    duration = result.get("duration")
    if view.phase.is_final:
        if not started and (view.phase == Phase.CANCELLED or run.start_time is None):
            return 0.0
        if isinstance(duration, (int, float)) and duration >= 0:
            return max(1, math.ceil(duration / 60)) * len(started)
    return reserved(run)


def granted(account: AccountBlock) -> float:
    if account.credits_minutes is None:
        return get_settings().vimqu_initial_credits_minutes
    return account.credits_minutes


class Credits:
    """Credits left per account, counted from its VimQu runs."""

    def __init__(self, client: PrefectClient):
        self.client = client
        self._ended: dict[UUID, float] = {}

    async def _runs(self, account: AccountBlock) -> list[FlowRun]:
        since: datetime | None = account.credits_since
        runs_filter = FlowRunFilter(
            tags=FlowRunFilterTags(all_=[ACCOUNT_TAG + account.name, SURFACE_TAG + SURFACE]),
            expected_start_time=FlowRunFilterExpectedStartTime(after_=since) if since else None,
        )
        runs: list[FlowRun] = []
        while True:
            page = await self.client.read_flow_runs(flow_run_filter=runs_filter, limit=MAX_READ, offset=len(runs))
            runs += page
            if len(page) < MAX_READ:
                return runs

    async def spent(self, account: AccountBlock) -> float:
        runs = await self._runs(account)
        total, unknown = 0.0, []
        for run in runs:
            if run.id in self._ended:
                total += self._ended[run.id]
            elif run.state is not None and run.state.is_final():
                unknown.append(run.id)
            else:
                total += reserved(run)
        if unknown:
            for run_id, view in (await read_runs(self.client, unknown)).items():
                if view.phase.is_final:
                    self._ended[run_id] = charge(view)
                total += charge(view)
        return total

    async def left(self, account: AccountBlock) -> dict[str, Any]:
        spent = await self.spent(account)
        grant = granted(account)
        return {"minutes_left": round(max(0.0, grant - spent), 2), "minutes_granted": grant,
                "minutes_spent": round(spent, 2),
                "granted_at": account.credits_since.isoformat() if account.credits_since else None}
