"""The VimQu rate limit shared by API processes through Redis (``DRAGONFLOW_REDIS_URL``): two
limiters (two API processes) against a real redis-server on 127.0.0.1 count the same
requests; without Redis each process counts its own."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
import uuid
from typing import Iterator

import pytest
import redis

from api.vimqu.errors import VimquError
from api.vimqu.limits import REDIS_PREFIX, RateLimiter
from tests.storage_servers import free_port

START_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A redis-server of its own (no persistence) on a free port of 127.0.0.1."""
    command = shutil.which("redis-server")
    assert command, "redis-server is missing: apt-get install -y redis-server (bootstrap.sh does)"
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([command, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, f"redis-server exited with {process.returncode}"
            try:
                if redis.Redis.from_url(url, socket_connect_timeout=0.5).ping():
                    break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, f"redis-server not answering on {port}"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def refused(limiter: RateLimiter, token: str) -> VimquError:
    with pytest.raises(VimquError) as caught:
        await limiter.hit(token)
    assert caught.value.status_code == 429
    return caught.value


async def test_two_api_processes_share_the_count(redis_url):
    first, second = RateLimiter(5, redis_url), RateLimiter(5, redis_url)
    token, other = f"vq_{uuid.uuid4().hex}", f"vq_{uuid.uuid4().hex}"
    try:
        for limiter in (first, second, first, second, first):
            await limiter.hit(token)
        assert await first.remaining(token) == 0 and await second.remaining(token) == 0
        for limiter in (second, first):
            error = await refused(limiter, token)
            assert 1 <= int(error.headers["Retry-After"]) <= 60 and "5 requests per minute" in error.message
        await second.hit(other)  # per token
        assert await first.remaining(other) == 4
        keys = [key.decode() for key in redis.Redis.from_url(redis_url).keys(REDIS_PREFIX + "*")]
        assert keys and not any(token in key or other in key for key in keys), keys  # never the token itself
    finally:
        await asyncio.gather(first.aclose(), second.aclose())


async def test_the_shared_window_slides(redis_url):
    first, second = RateLimiter(2, redis_url, window=1.0), RateLimiter(2, redis_url, window=1.0)
    token = f"vq_{uuid.uuid4().hex}"
    try:
        await first.hit(token)
        await asyncio.sleep(0.6)
        await second.hit(token)
        error = await refused(first, token)
        assert error.headers["Retry-After"] == "1"
        await asyncio.sleep(0.5)  # the first request left the window, the second not yet
        await second.hit(token)
        await refused(first, token)
    finally:
        await asyncio.gather(first.aclose(), second.aclose())


async def test_while_redis_is_unreachable_each_process_counts_its_own(caplog):
    url = f"redis://127.0.0.1:{free_port()}/0"
    first, second = RateLimiter(2, url), RateLimiter(2, url)
    token = f"vq_{uuid.uuid4().hex}"
    try:
        with caplog.at_level(logging.WARNING, logger="dragonflow.vimqu.limits"):
            await first.hit(token)
            await first.hit(token)
            await refused(first, token)
            await second.hit(token)
        assert await second.remaining(token) == 1
        warnings = [r.getMessage() for r in caplog.records if r.name == "dragonflow.vimqu.limits"]
        assert warnings == ["rate limit counted by this process only: Redis cannot be reached (ConnectionError)"] * 2
    finally:
        await asyncio.gather(first.aclose(), second.aclose())
