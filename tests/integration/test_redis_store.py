"""The Redis store against a real server: round trips, TTLs, de-duplication, bounded history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from redis import Redis
from redis import asyncio as aioredis

from engine.decision.events import EventEffects, effects_of
from engine.domain import Event, Feedback, StoredDecision
from engine.equity.config import EquityConfig
from engine.equity.facts import merge
from engine.errors import StoreUnavailable
from engine.rules.loader import load_ruleset
from engine.rules.triggers import effects_of_event
from engine.rules.vocabulary import Vocabulary
from engine.state import keys
from engine.state.redis_store import MAX_TOPICS, RedisStore
from tests.conftest import EXAMPLE_RULES, T0

pytestmark = pytest.mark.anyio


def counting(base: type) -> type:
    """A connection class that counts how often it writes to the socket: one write, one round trip."""

    class Counting(base):  # type: ignore[misc, valid-type]
        sends = 0

        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            type(self).sends += 1
            await super().send_packed_command(command, check_health)

    return Counting


class Writes:
    """Socket writes since the store was prepared, over pooled connections and the hot-path one."""

    def __init__(self, connection_class: Any, store: RedisStore) -> None:
        self.connection_class = connection_class
        self.start = connection_class.sends + store.multiplexer.writes
        self.store = store

    @property
    def sends(self) -> int:
        return self.connection_class.sends + self.store.multiplexer.writes - self.start


@pytest.fixture
async def counted(redis_url: str, redis_sync: Redis) -> AsyncIterator[tuple[RedisStore, Writes]]:
    pool = aioredis.ConnectionPool.from_url(redis_url)
    pool.connection_class = counting(pool.connection_class)
    client = aioredis.Redis.from_pool(pool)
    store = RedisStore(client, decision_ttl_s=3600, dedup_ttl_s=600, recent_limit=5, stream_maxlen=10_000)
    await store.prepare()
    yield store, Writes(pool.connection_class, store)
    await store.aclose()
    await client.aclose()


VOCAB = Vocabulary.build({"tier": "string"})
D1 = keys.new_decision_id("0" * 32, "c1")


def event(i: int, type_: str = "page_view", customer: str = "c1", **attrs: Any) -> Event:
    return Event(f"e{i}", customer, type_, T0 + i, "web", attrs)


async def test_reading_a_customer_is_one_round_trip(counted: tuple[RedisStore, Writes]) -> None:
    store, conn = counted
    state = await store.read_customer("nobody", T0, with_recent=True)
    assert conn.sends == 1
    assert not state.known and state.profile == {} and state.recent == []
    await store.read_customer("nobody", T0, with_recent=False)
    assert conn.sends == 2


async def test_every_part_of_a_customer_reads_back_whatever_its_names_and_values(
    counted: tuple[RedisStore, Writes], redis_sync: Redis
) -> None:
    """The read script builds one JSON document in Redis: names with quotes, backslashes, slashes
    and non-ASCII, nested JSON values and numbers in every stored form must come back intact."""
    store, _ = counted
    cid, odd = "c-odd", 'a"b\\c/é\n'
    profile = {"tier": "gold", odd: {"nested": [1, 2.5, None, 'x"y']}, "age": 41}
    redis_sync.hset(keys.profile(cid), mapping={k: orjson.dumps(v) for k, v in profile.items()})
    redis_sync.hset(
        keys.cart(cid), mapping={f"i:{odd}": orjson.dumps({"price": 9.5}), f"q:{odd}": 3, "i:gone": b"{}", "q:gone": 0}
    )
    redis_sync.hset(keys.last(cid), odd, orjson.dumps({"ts": T0, "amount": 12.25}))
    redis_sync.hset(keys.caps_day(cid, T0), mapping={"t:offer": 2, odd: 1})
    redis_sync.hset(keys.caps_week(cid, T0), "g:sales", 5)
    redis_sync.rpush(keys.recent(cid), orjson.dumps({"type": "page_view", "ts": T0}), orjson.dumps({"type": odd}))
    redis_sync.hset(keys.flags(cid), mapping={"cart_abandoned": T0 + 1_000, "lapsed": T0 - 1})
    redis_sync.hset(keys.caps_total(cid), "t:offer", 7)
    redis_sync.hset(keys.topics(cid), f"disliked:{odd}", 4)
    redis_sync.hset(keys.value_facts(cid), mapping={"spend": "1.0000000000000001e-05", "purchases": "3", "last_ts": 1.7e12})
    redis_sync.zadd(keys.counter(cid, "complaints"), {f"{T0 - 5}:e1": T0 - 5, f"{T0}:{odd}": T0})

    state = await store.read_customer(cid, T0, with_recent=True, counters=["complaints"])

    assert state.profile == profile
    assert state.cart == {odd: {"price": 9.5, "qty": 3}}
    assert state.last == {odd: {"ts": T0, "amount": 12.25}}
    assert state.caps_day == {"t:offer": 2, odd: 1} and state.caps_week == {"g:sales": 5}
    assert state.recent == [{"type": "page_view", "ts": T0}, {"type": odd}]
    assert state.flags == {"cart_abandoned": T0 + 1_000}
    assert state.caps_total == {"t:offer": 7} and state.topics == {f"disliked:{odd}": 4}
    assert state.facts == {"spend": 1.0000000000000001e-05, "purchases": 3.0, "last_ts": 1.7e12}
    assert state.counters == {"complaints": [T0 - 5, T0]}
    assert (await store.read_customer(cid, T0, with_recent=False)).recent == []


async def test_a_stored_value_that_is_not_json_names_the_customer(counted: tuple[RedisStore, Writes], redis_sync: Redis) -> None:
    store, _ = counted
    redis_sync.hset(keys.profile("c-bad"), "tier", b"gold")  # written around the engine, unquoted
    with pytest.raises(StoreUnavailable, match="c-bad"):
        await store.read_customer("c-bad", T0, with_recent=False)
    # Numeric hashes arrive as numbers, embedded unconverted: one that is not a number is refused
    # the same way, not turned into an error deeper in the decision.
    redis_sync.hset(keys.caps_day("c-caps", T0), "t:offer", b"lots")
    with pytest.raises(StoreUnavailable, match="c-caps"):
        await store.read_customer("c-caps", T0, with_recent=False)


async def test_decision_write_back_is_one_round_trip_with_ttls(counted: tuple[RedisStore, Writes], redis_sync: Redis) -> None:
    store, conn = counted
    record = StoredDecision(D1, "c1", "web", None, T0, "v1", [{"id": "a", "group": "sales", "score": 1.0, "propensity": 0.1}])
    await store.write_decision(record, ["t:a", "g:sales"])
    assert conn.sends == 1
    day, week = keys.caps_day("c1", T0), keys.caps_week("c1", T0)
    assert redis_sync.hgetall(day) == {b"t:a": b"1", b"g:sales": b"1"}
    assert redis_sync.hget(week, "t:a") == b"1"
    assert 0 < redis_sync.ttl(day) <= keys.DAY_CAPS_TTL_S
    assert 0 < redis_sync.ttl(week) <= keys.WEEK_CAPS_TTL_S
    assert 3500 < redis_sync.ttl(keys.decision(D1)) <= 3600
    assert keys.decision(D1).startswith("c:{c1}:"), "the record lives in the customer's hash slot"
    stream = redis_sync.xrange(keys.STREAM_DECISIONS)
    assert len(stream) == 1 and orjson.loads(stream[0][1][b"d"])["decision_id"] == D1
    state = await store.read_customer("c1", T0, with_recent=False)
    assert state.caps_day == {"t:a": 1, "g:sales": 1} and state.caps_week["g:sales"] == 1


async def test_scripts_forgotten_by_redis_are_reloaded(counted: tuple[RedisStore, Writes], redis_sync: Redis) -> None:
    store, _ = counted
    redis_sync.script_flush()
    record = StoredDecision(D1, "c1", "web", None, T0, "v1", [])
    await store.write_decision(record, ["t:a"])
    assert (await store.read_customer("c1", T0, with_recent=False)).caps_day == {"t:a": 1}
    assert redis_sync.xlen(keys.STREAM_DECISIONS) == 1, "the stream entry is written once, not again on reload"


async def test_event_claims_deduplicate_and_expire(counted: tuple[RedisStore, Writes], redis_sync: Redis) -> None:
    store, conn = counted
    assert await store.claim_events([("c1", "e1"), ("c2", "e1")]) == [True, True]
    assert await store.claim_events([("c1", "e1"), ("c1", "e2")]) == [False, True]
    assert conn.sends == 2
    assert 0 < redis_sync.ttl(keys.event_seen("c1", "e1")) <= 600
    await store.release_events([("c1", "e1")])
    assert await store.claim_events([("c1", "e1")]) == [True]


async def test_applied_events_update_state_in_one_round_trip(counted: tuple[RedisStore, Writes], redis_sync: Redis) -> None:
    store, conn = counted
    effects = [
        effects_of(event(1, "cart_add", sku="A1", price=20.0, qty=2), VOCAB, T0),
        effects_of(event(2, "profile_update", tier="gold"), VOCAB, T0),
        *(effects_of(event(i), VOCAB, T0) for i in range(3, 10)),
    ]
    await store.apply_events(effects)
    assert conn.sends == 1
    state = await store.read_customer("c1", T0, with_recent=True)
    assert state.profile == {"tier": "gold"}
    assert state.cart_summary() == {"value": 40.0, "items": 2, "skus": ["A1"]}
    assert state.last["cart_add"]["ts"] == T0 + 1 and state.last["cart_add"]["sku"] == "A1"
    # The history is bounded (recent_limit=5) and newest first.
    assert [e["event_id"] for e in state.recent] == ["e9", "e8", "e7", "e6", "e5"]
    assert redis_sync.xlen(keys.STREAM_EVENTS) == 9

    await store.apply_events([effects_of(event(10, "checkout"), VOCAB, T0)])
    assert (await store.read_customer("c1", T0, with_recent=False)).cart == {}


async def test_feedback_joins_a_stored_decision_once(counted: tuple[RedisStore, Writes], redis_sync: Redis) -> None:
    store, _ = counted
    assert await store.claim_feedback("f1", "missing") == (None, False)
    record = StoredDecision(D1, "c1", "web", None, T0, "v1", [{"id": "a", "group": "g", "score": 1.0, "propensity": 0.1}])
    await store.write_decision(record, [])
    found, new = await store.claim_feedback("f1", D1)
    assert found == record and new
    assert (await store.claim_feedback("f1", D1))[1] is False
    await store.apply_feedback(Feedback("f1", D1, "a", "purchase", 12.5), "c1", T0)
    assert redis_sync.hgetall(keys.treatment_stats("a")) == {b"purchase": b"1", b"value": b"12.5"}
    assert await store.read_responses("c1") == {"a:purchase": 1}
    entry = orjson.loads(redis_sync.xrange(keys.STREAM_FEEDBACK)[0][1][b"f"])
    assert entry["decision_id"] == D1 and entry["customer_id"] == "c1" and entry["value"] == 12.5


async def test_a_record_written_by_a_newer_version_is_still_read(counted: tuple[RedisStore, Writes], redis_sync: Redis) -> None:
    """During a rolling upgrade this version reads records with fields it does not know yet."""
    store, _ = counted
    record = StoredDecision(D1, "c1", "web", None, T0, "v1", [{"id": "a", "group": "g", "score": 1.0, "propensity": 0.1}])
    redis_sync.set(keys.decision(D1), orjson.dumps({**orjson.loads(orjson.dumps(record)), "added_later": {"x": 1}}))
    found, new = await store.claim_feedback("f1", D1)
    assert found == record and new


async def test_value_facts_are_summed_and_min_maxed_in_redis_as_merge_says(counted: tuple[RedisStore, Writes]) -> None:
    store, _ = counted
    config = EquityConfig.default()
    arrivals = [
        event(1, "purchase", amount=120.0, order_id="o1"),
        event(2, "complaint"),
        event(-5, "purchase", amount=30.0, margin=10.0),  # late: earlier than what came before
        event(3, "social_mention", sentiment=-0.5),
        event(4, "page_view"),  # no facts
    ]
    effects = [effects_of(e, VOCAB, T0, equity=config) for e in arrivals]
    await store.apply_events(effects)
    expected: dict[str, float] = {}
    for fx in effects:
        expected = merge(expected, fx.facts)
    state = await store.read_customer("c1", T0, with_recent=False)
    assert state.facts.keys() == expected.keys()
    for name, value in expected.items():
        assert state.facts[name] == pytest.approx(value, rel=1e-12), name
    assert state.facts["first_purchase_ms"] == T0 - 5 and state.facts["last_purchase_ms"] == T0 + 1
    assert state.facts["order_count"] == 2 and state.facts["spend_total"] == 150.0


async def test_a_customers_topics_stay_bounded_keeping_the_newest(counted: tuple[RedisStore, Writes], redis_sync: Redis) -> None:
    """Every decision reads the topics whole, and topics are free text: the oldest go."""
    store, _ = counted
    many = MAX_TOPICS + 5
    await store.apply_events([effects_of(event(i, "complaint", topic=f"topic {i}"), VOCAB, T0) for i in range(1, many + 1)])
    topics = {k.decode(): int(v) for k, v in redis_sync.hgetall(keys.topics("c1")).items()}
    assert len(topics) == MAX_TOPICS
    assert set(topics) == {f"disliked:topic {i}" for i in range(6, many + 1)}, "the five heard of longest ago went"
    # A late event about a topic does not make it look older than it is.
    await store.apply_events([effects_of(event(-100, "complaint", topic=f"topic {many}"), VOCAB, T0)])
    assert int(redis_sync.hget(keys.topics("c1"), f"disliked:topic {many}")) == T0 + many
    state = await store.read_customer("c1", T0 + many, with_recent=False)
    assert len(state.topics) == MAX_TOPICS


async def test_of_events_counted_together_exactly_one_reaches_a_threshold_and_its_flag_is_set_with_it(
    counted: tuple[RedisStore, Writes], redis_sync: Redis
) -> None:
    store, _ = counted
    rules = load_ruleset(EXAMPLE_RULES)

    def complaint(i: int) -> EventEffects:
        e = event(i, "complaint", customer="c9", topic="seats")
        fx = effects_of(e, rules.vocabulary, T0)
        return replace(fx, triggers=effects_of_event(e, fx.ts, rules.triggers_by_event, rules.timer_cancels))

    # Six ingests at once, each with one complaint: the counts they see are 1 to 6, once each.
    counts = await asyncio.gather(*(store.apply_events([complaint(i)]) for i in range(1, 7)))
    assert sorted(c[0][0] for c in counts) == [1, 2, 3, 4, 5, 6]
    assert redis_sync.hget(keys.flags("c9"), "repeat_complainer") is not None
    # The same event again (a retry) adds nothing: the count stays.
    assert (await store.apply_events([complaint(6)]))[0] == (6,)


async def test_a_threshold_counts_within_its_window_of_now_whatever_time_events_claim(
    counted: tuple[RedisStore, Writes], redis_sync: Redis
) -> None:
    store, _ = counted
    rules = load_ruleset(EXAMPLE_RULES)
    day = 86_400_000

    def complaint(event_id: str, ts: int) -> EventEffects:
        e = Event(event_id, "c7", "complaint", ts, "web", {"topic": "seats"})
        fx = effects_of(e, rules.vocabulary, T0)
        return replace(fx, triggers=effects_of_event(e, fx.ts, rules.triggers_by_event, rules.timer_cancels, T0))

    assert await store.apply_events([complaint("a", T0 - 2 * day), complaint("b", T0 - day)]) == [(1,), (2,)]
    # Backfilled from a month ago: it completes nothing, and is not kept.
    assert await store.apply_events([complaint("old", T0 - 30 * day)]) == [(0,)]
    assert redis_sync.hget(keys.flags("c7"), "repeat_complainer") is None
    assert redis_sync.zcard(keys.counter("c7", "complaints")) == 2
    # One dated far ahead does not push the real ones out.
    assert await store.apply_events([complaint("ahead", T0 + 365 * day)]) == [(3,)]
    assert redis_sync.zcard(keys.counter("c7", "complaints")) == 3
