"""One create at a time: the lock an account's limits are counted under.

A create counts the account's runs, then creates its own; two creates counting at once
could both pass a limit (``max_concurrent``, ``max_per_day``, VimQu credits). Within an
API process one asyncio lock serializes every create. With ``redis_url`` set (the scale
topology, or several ``dragonflow api`` processes sharing one Redis), a create for an
account with limits also holds that account's Redis lock, so every API process counts the
same runs: one ``SET NX PX`` to take it and one script to release it, a lease that a dead
process's lock outlives by at most ``LEASE`` seconds. While Redis cannot be reached (a
warning is logged) each process counts on its own."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

import redis.asyncio as redis
from redis.exceptions import LockError, RedisError

from api.errors import ApiError
from flows.settings import get_settings

LEASE = 30.0  # seconds a create may hold an account's lock
WAIT = 30.0  # seconds a create waits for another process's create of the same account
PREFIX = "dragonflow:create:"
REDIS_TIMEOUT = 2.0
logger = logging.getLogger("dragonflow.create_lock")


class CreateLock:
    """``hold(account, limited)``: this process's lock, and with Redis the account's."""

    def __init__(self, redis_url: str | None = None):
        url = redis_url or get_settings().redis_url
        self.local = asyncio.Lock()
        self.shared = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT,
                                           socket_timeout=REDIS_TIMEOUT) if url else None
        self._warned = False

    @staticmethod
    def key(account: str) -> str:
        return PREFIX + hashlib.sha256(account.encode()).hexdigest()[:32]

    @asynccontextmanager
    async def hold(self, account: str, limited: bool) -> AsyncIterator[None]:
        """Hold the lock ``account``'s limits are counted under (across processes only when
        it has ``limited`` counts to protect: other creates pay nothing more)."""
        async with self.local:
            lock = await self._take(account) if limited and self.shared is not None else None
            try:
                yield
            finally:
                if lock is not None:
                    try:
                        await lock.release()
                    except (LockError, RedisError, OSError):  # expired or Redis gone: it frees itself
                        pass

    async def _take(self, account: str) -> redis.lock.Lock | None:
        lock = self.shared.lock(self.key(account), timeout=LEASE, blocking_timeout=WAIT, sleep=0.01)
        try:
            taken = await lock.acquire()
        except (RedisError, OSError) as exc:
            if not self._warned:
                self._warned = True
                logger.warning("account limits counted by this process only: Redis cannot be reached (%s)",
                               type(exc).__name__)
            return None
        self._warned = False
        if not taken:
            raise ApiError(503, "account", "body",
                           f"another create of this account has held its lock for {WAIT:g} s: try again")
        return lock

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()
