"""Regression (found by the outage drill): with a Redis store the login throttle's storage is
Redis too; a broken connection raised ``redis.ConnectionError`` out of ``/login`` (a 500) and
a silent network could hang the request. Now every throttle call is bounded and fails closed."""

from __future__ import annotations

import time

import pytest

from support.faultproxy import FaultProxy
from support.live import check_service, redis_url
from support.stores import REDIS_HOST, REDIS_PORT
from support.wait import HANG
from tokenward.errors import StoreUnavailable
from tokenward.server.ratelimit import LoginThrottle


async def test_unreachable_throttle_storage_is_503_not_500() -> None:
    throttle = LoginThrottle(storage_url="async+redis://127.0.0.1:1/0", timeout=0.5)
    for call in (throttle.check("alice", "10.0.0.1"), throttle.failed("alice", "10.0.0.1"),
                 throttle.succeeded("alice")):  # fmt: skip
        with pytest.raises(StoreUnavailable):
            await call


@pytest.mark.services
async def test_silent_throttle_storage_is_bounded() -> None:
    check_service("redis")
    with FaultProxy(REDIS_PORT, target_host=REDIS_HOST) as proxy:
        throttle = LoginThrottle(storage_url="async+" + redis_url(13, port=proxy.port), timeout=0.5)
        await throttle.check("alice", "10.0.0.1")  # works through the proxy
        proxy.pause()
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await throttle.check("alice", "10.0.0.1")
        assert time.monotonic() - t0 < 0.5 + HANG  # bounded by the timeout, not hung
        proxy.cut()
        with pytest.raises(StoreUnavailable):
            await throttle.failed("alice", "10.0.0.1")
        proxy.restore()
        await throttle.check("bob", "10.0.0.2")  # recovers by itself


def test_redis_url_prefix_isolates_a_server_and_is_not_passed_to_limits() -> None:
    """``?prefix=`` in a Redis store URL (what the drills use to isolate concurrent servers)
    names the store's keys and is removed from the URL given to redis-py and to ``limits``."""
    from tokenward.server.ratelimit import storage_url_for
    from tokenward.store.redis import RedisStore

    store = RedisStore("redis://127.0.0.1:6379/12?prefix=abc&protocol=2")
    assert store.prefix == "abc" and store.url == "redis://127.0.0.1:6379/12?protocol=2"
    assert RedisStore("redis://127.0.0.1:6379/12").prefix == "tw"
    assert storage_url_for("redis://h:6379/1?prefix=abc") == "async+redis://h:6379/1"
