"""The shared hot-path connection against a real server: batching, order, failures, set-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis import ConnectionPool, Redis
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from engine.state.multiplex import Multiplexer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pool(redis_url: str, redis_sync: Redis) -> AsyncIterator[aioredis.ConnectionPool]:
    pool = aioredis.ConnectionPool.from_url(redis_url)
    yield pool
    await pool.disconnect()


@pytest.fixture
async def mux(pool: aioredis.ConnectionPool) -> AsyncIterator[Multiplexer]:
    m = Multiplexer(pool)
    yield m
    m.close()


async def test_concurrent_callers_share_writes_and_each_gets_its_own_replies(mux: Multiplexer, redis_sync: Redis) -> None:
    redis_sync.mset({f"k{i}": f"v{i}" for i in range(300)})

    async def one(i: int) -> list[object]:
        return await mux.execute(("GET", f"k{i}"), ("STRLEN", f"k{i}"))

    replies = await asyncio.gather(*(one(i) for i in range(300)))
    assert replies == [[f"v{i}".encode(), len(f"v{i}")] for i in range(300)]
    # The 300 callers queued in one loop turn went out together, after the connection set-up.
    assert mux.writes <= 3, mux.writes
    assert mux.in_flight == 0


async def test_commands_issued_while_a_batch_awaits_its_replies_go_out_together_once_it_is_answered(
    mux: Multiplexer, redis_sync: Redis
) -> None:
    redis_sync.mset({"a": "1", "b": "2", "c": "3"})
    assert await mux.execute(("PING",)) == [b"PONG"]  # connected, nothing unanswered
    writes = mux.writes
    ahead = asyncio.ensure_future(mux.execute(("BLPOP", "never-filled", 0.2)))  # answers (nil) after 0.2 s
    await asyncio.sleep(0.02)
    assert mux.writes == writes + 1, "a command with nothing ahead of it goes out at once"
    held = []
    for key in "abc":  # one per loop turn, as gRPC's server hands requests over
        held.append(asyncio.ensure_future(mux.execute(("GET", key))))
        await asyncio.sleep(0)
    assert mux.writes == writes + 1, "held while the batch ahead awaits its reply"
    assert [await f for f in held] == [[b"1"], [b"2"], [b"3"]]
    assert await ahead == [None]
    assert mux.writes == writes + 2, "the three went out in one write"
    assert mux.in_flight == 0


async def test_an_error_reply_is_returned_in_place_and_the_rest_still_answer(mux: Multiplexer, redis_sync: Redis) -> None:
    redis_sync.set("s", "text")
    replies = await mux.execute(("INCR", "s"), ("EVALSHA", "0" * 40, 0), ("GET", "s"))
    assert isinstance(replies[0], ResponseError) and "not an integer" in str(replies[0])
    assert isinstance(replies[1], NoScriptError)
    assert replies[2] == b"text"


async def test_a_caller_that_gives_up_does_not_put_the_connection_out_of_step(mux: Multiplexer, redis_sync: Redis) -> None:
    redis_sync.set("after", "right")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await mux.execute(("BLPOP", "never-filled", 0.3))  # answers (nil) only after 0.3 s
    # Queued behind the abandoned reply: it must get its own, not the BLPOP's.
    assert await mux.execute(("GET", "after")) == [b"right"]
    assert mux.in_flight == 0


async def test_a_reply_later_than_its_deadline_is_a_timeout_and_the_next_call_still_answers(
    mux: Multiplexer, redis_sync: Redis
) -> None:
    redis_sync.set("after", "right")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await mux.execute(("BLPOP", "never-filled", 0.5), within_s=0.05)
    assert loop.time() - started < 0.4, "the deadline, not the reply, ended the wait"
    assert await mux.execute(("GET", "after"), within_s=2) == [b"right"]


async def test_a_killed_connection_fails_its_callers_and_the_next_call_reconnects(mux: Multiplexer, redis_sync: Redis) -> None:
    assert await mux.execute(("PING",)) == [b"PONG"]
    pending = asyncio.ensure_future(mux.execute(("BLPOP", "never-filled", 5)))
    await asyncio.sleep(0.05)
    assert redis_sync.client_kill_filter(_type="normal", skipme=True) >= 1  # kills the hot-path connection
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(pending, 2)
    await asyncio.sleep(0)
    assert await mux.execute(("SET", "back", "1"), ("GET", "back")) == [b"OK", b"1"]
    assert any(c["name"] == "nba-hot-path" for c in redis_sync.client_list())


async def test_too_many_commands_in_flight_fail_at_once(pool: aioredis.ConnectionPool) -> None:
    mux = Multiplexer(pool, max_in_flight=2)
    try:
        assert await mux.execute(("PING",), ("PING",)) == [b"PONG", b"PONG"]
        with pytest.raises(RedisConnectionError, match="in flight"):
            await mux.execute(("PING",), ("PING",), ("PING",))
    finally:
        mux.close()


async def test_the_database_number_of_the_url_is_selected(pool: aioredis.ConnectionPool, redis_url: str) -> None:
    pool.connection_kwargs["db"] = 5
    mux = Multiplexer(pool)
    other_pool = ConnectionPool.from_url(redis_url)  # the URL may name db 0: set 5 after parsing it
    other_pool.connection_kwargs["db"] = 5
    other = Redis(connection_pool=other_pool)
    try:
        await mux.execute(("SET", "in-db-5", "yes"))
        assert other.get("in-db-5") == b"yes"
        assert Redis.from_url(redis_url).get("in-db-5") is None
    finally:
        other.flushdb()
        other.close()
        mux.close()


async def test_credentials_are_sent_and_a_refusal_is_a_connection_error(redis_url: str, redis_sync: Redis) -> None:
    redis_sync.acl_setuser("nba-test", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"])
    try:
        good = aioredis.ConnectionPool.from_url(redis_url, username="nba-test", password="s3cret")
        mux = Multiplexer(good)
        assert await mux.execute(("ACL", "WHOAMI")) == [b"nba-test"]
        mux.close()
        bad = aioredis.ConnectionPool.from_url(redis_url, username="nba-test", password="wrong")
        with pytest.raises(RedisConnectionError, match="refused the connection set-up"):
            await Multiplexer(bad).execute(("PING",))
    finally:
        redis_sync.acl_deluser("nba-test")
