"""The only module that talks to Redis.

Every public method is one pipelined round trip (event ingest is two: claim ids, then apply),
as the performance budget requires. Values are JSON (orjson); hashes hold one customer's
profile, cart and newest event per type, so partial updates never rewrite a whole document.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
from redis import asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from engine.domain import CustomerState, EventEffects, Feedback, StoredDecision
from engine.equity.facts import SET_IF_GREATER, SET_IF_SMALLER
from engine.errors import StoreUnavailable
from engine.rules.triggers import Crossing, TriggerEffects, crossing_payload
from engine.state import keys
from engine.state.multiplex import Multiplexer
from engine.state.scripts import (
    APPLY_FACTS,
    CANCEL_TIMER_MARK,
    COUNT_OCCURRENCE,
    FIRE_TIMER,
    INCREMENT,
    REMEMBER_TOPIC,
    SCHEDULE_TIMERS,
    SCRIPTS,
    SET_LAST,
    SET_PROFILE,
    SET_TIMER_MARK,
    Scripts,
)

PURCHASES_KEPT = 50
MAX_COUNTER_ENTRIES = 1_000
"""A counter keeps at most this many occurrences (beyond, the oldest go): reads stay bounded."""
MAX_TOPICS = 100
"""A customer's topics (liked, disliked, ideas) kept, newest first: every decision reads them."""
TIMER_MARK_GRACE_MS = 30 * 86_400_000
"""How long past its due time a timer's mark is kept: a worker that falls further behind than
this finds the mark gone and drops the timer, as if cancelled."""
FIRED_MARK_TTL_MS = 86_400_000
"""How long a fired timer's mark is kept, for a worker that fires it again after another died
before completing it: long past any lease."""


def _loads_hash(raw: dict[bytes, bytes]) -> dict[str, Any]:
    return {k.decode(): orjson.loads(v) for k, v in raw.items()}


def _cart(fields: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Cart lines from `i:<sku>` (line details) and `q:<sku>` (quantity, kept by HINCRBY)."""
    lines: dict[str, dict[str, Any]] = {}
    quantities: dict[str, int] = {}
    for k, v in fields.items():
        kind, _, sku = k.partition(":")
        if kind == "i":
            lines[sku] = v
        elif kind == "q":
            quantities[sku] = v
    return {sku: {**line, "qty": quantities.get(sku, 1)} for sku, line in lines.items() if quantities.get(sku, 1) > 0}


def newest_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Interactions by their own time, newest first. Lists are kept in arrival order (LPUSH),
    which a backfilled event breaks; sorting the few read is cheap, and a list already in order
    (nearly always) costs one pass. Equal times keep their arrival order."""
    return sorted(entries, key=_entry_ts, reverse=True)


def _entry_ts(entry: dict[str, Any]) -> int:
    ts = entry.get("ts")
    return ts if isinstance(ts, int) else 0


def customer_state(customer_id: str, document: bytes, now_ms: int, counters: Sequence[str]) -> CustomerState:
    """A customer from the read script's document (see engine.state.scripts.READ_CUSTOMER)."""
    try:
        doc = orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        # Only a value written around the engine could do this; say which customer.
        raise StoreUnavailable(f"customer {customer_id!r} has a stored value that is not JSON: {exc}") from exc
    return CustomerState(
        customer_id=customer_id,
        profile=doc[0],
        cart=_cart(doc[1]),
        last=doc[2],
        caps_day=doc[3],
        caps_week=doc[4],
        recent=newest_first(doc[5]),
        flags={k: v for k, v in doc[6].items() if v > now_ms},
        caps_total=doc[7],
        topics=doc[8],
        facts=doc[9],
        counters=dict(zip(counters, doc[10:], strict=True)),
    )


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _ints(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.items()}


def _timer_keys(shard: int) -> list[str]:
    """The keys every timer script takes, all in the shard's hash slot."""
    return [keys.timer_due(shard), keys.timer_inflight(shard), keys.timer_data(shard)]


def _fact_ops(facts: dict[str, float]) -> list[Any]:
    """(op, field, value) triples for the apply_facts script."""
    out: list[Any] = []
    for name, value in facts.items():
        op = "<" if name in SET_IF_SMALLER else ">" if name in SET_IF_GREATER else "+"
        out += (op, name, repr(float(value)))
    return out


def _fired_writes(fx: TriggerEffects, due: int) -> bytes:
    """A fired timer's writes as FIRE_TIMER reads them."""
    now = fx.now_ms if fx.now_ms is not None else due
    increments = [
        [f"{ts}:{cause}", str(ts), str(now - window), str(window), str(MAX_COUNTER_ENTRIES)]
        for _, ts, window, cause in fx.increments
    ]
    return orjson.dumps({"set": {k: str(v) for k, v in fx.flags_set.items()}, "clear": fx.flags_clear, "inc": increments})


class RedisStore:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        decision_ttl_s: int,
        dedup_ttl_s: int,
        recent_limit: int,
        stream_maxlen: int,
        timeout_s: float = 0.5,
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.multiplexer = Multiplexer(client.connection_pool, connect_timeout_s=timeout_s)
        self._scripts = Scripts(client, SCRIPTS)
        self.decision_ttl_s = decision_ttl_s
        self.dedup_ttl_s = dedup_ttl_s
        self.recent_limit = recent_limit
        self.stream_maxlen = stream_maxlen

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Every Redis call: bounded in time, and any failure becomes StoreUnavailable.

        The bound is an asyncio timeout here rather than redis-py's socket timeout, which wraps
        every send in asyncio.wait_for (a task per command). A call cut short this way is
        cancelled, and redis-py drops that connection rather than reuse it mid-reply.
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                yield
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"state store error: {exc or type(exc).__name__}") from exc

    async def _raw(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send commands together and read their replies, over the shared hot-path connection.

        The hot-path calls (a decision's read and its write-back) skip redis-py's command
        machinery (pool checkout, retries, callbacks, observability hooks), which in profiles
        cost more than the decision itself, and are batched with other requests' commands (see
        engine.state.multiplex). Replies that are errors are returned, not raised.
        """
        try:
            return await self.multiplexer.execute(*commands, within_s=self.timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"state store error: {exc or type(exc).__name__}") from exc

    async def aclose(self) -> None:
        """Close the hot-path connection (the client passed in is the caller's to close)."""
        self.multiplexer.close()

    async def _evalsha(self, name: str, keys_: list[str], args: list[Any], *more: tuple[Any, ...]) -> list[Any]:
        """A script (loaded again if Redis forgot it) and more commands, in one round trip."""
        sha = self._scripts.shas[name]
        replies = await self._raw(("EVALSHA", sha, len(keys_), *keys_, *args), *more)
        if isinstance(replies[0], NoScriptError):
            async with self._guard():
                await self._scripts.load_all()
            replies[0] = (await self._raw(("EVALSHA", sha, len(keys_), *keys_, *args)))[0]
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreUnavailable(f"state store error: {reply}") from reply
        return replies

    async def prepare(self) -> None:
        """Load the Lua scripts (also re-done on demand if Redis forgets them)."""
        async with self._guard():
            await self._scripts.load_all()

    async def ping(self) -> bool:
        try:
            async with self._guard():
                return bool(await self.client.ping())
        except StoreUnavailable:
            return False

    async def _execute(self, pipe: Any) -> list[Any]:
        async with self._guard():
            return list(await pipe.execute())

    async def read_customer(
        self, customer_id: str, now_ms: int, *, with_recent: bool, counters: Sequence[str] = ()
    ) -> CustomerState:
        (document,) = await self._evalsha(
            "read", keys.state_keys(customer_id, now_ms, counters), [self.recent_limit if with_recent else 0]
        )
        return customer_state(customer_id, document, now_ms, counters)

    async def write_decision(self, record: StoredDecision, counter_fields: Sequence[str]) -> None:
        """Counters and record in one script on the customer's node; the stream entry (and the
        model's reward windows) beside it; all in one round trip."""
        cid, now = record.customer_id, record.ts
        payload = orjson.dumps(record)
        more: list[tuple[Any, ...]] = [("XADD", keys.STREAM_DECISIONS, "MAXLEN", "~", self.stream_maxlen, "*", "d", payload)]
        model = record.model or {}
        if model.get("window_ms") and record.treatments:
            # The model's reward windows open here, with the decision, so the learner does not
            # have to read every decision back from the stream to learn its non-responses.
            due = record.ts + int(model["window_ms"])
            members = [x for t in record.treatments for x in (due, f"{record.decision_id}|{t['id']}")]
            more.append(("ZADD", keys.model_due(str(model["id"])), "NX", *members))
        await self._evalsha(
            "write_decision",
            keys.write_back_keys(cid, now, record.decision_id),
            [keys.DAY_CAPS_TTL_S, keys.WEEK_CAPS_TTL_S, self.decision_ttl_s, payload, " ".join(counter_fields)],
            *more,
        )

    async def claim_events(self, ids: Sequence[tuple[str, str]]) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        for cid, eid in ids:
            pipe.set(keys.event_seen(cid, eid), b"1", nx=True, ex=self.dedup_ttl_s)
        return [bool(x) for x in await self._execute(pipe)]

    async def release_events(self, ids: Sequence[tuple[str, str]]) -> None:
        # If this fails too the claims expire; a retry inside the dedup TTL is then taken for a duplicate.
        if ids:
            with contextlib.suppress(StoreUnavailable):
                async with self._guard():
                    await self.client.delete(*(keys.event_seen(cid, eid) for cid, eid in ids))

    async def apply_events(self, effects: Sequence[EventEffects], now_ms: int | None = None) -> list[tuple[int, ...]]:
        """Apply events in one round trip. Returns, per event, the counts of the counters its
        triggers watch (engine.rules.triggers.Threshold), each taken just after its occurrence
        was added (the flags of a threshold reached are already set), for the caller to send
        the messages of the thresholds reached."""
        pipe = self.client.pipeline(transaction=False)
        now = "" if now_ms is None else now_ms
        watched: list[list[int]] = []
        for fx in effects:
            cid = fx.event.customer_id
            positions: list[int] = []
            entry = orjson.dumps(fx.interaction)
            if fx.profile_set:
                fields = [x for k, v in fx.profile_set.items() for x in (k, orjson.dumps(v))]
                pipe.eval(SET_PROFILE, 2, keys.profile(cid), keys.profile_times(cid), fx.ts, now, *fields)
            if fx.cart_clear:
                pipe.delete(keys.cart(cid))
            if fx.cart_remove:
                pipe.hdel(keys.cart(cid), *(f"{kind}:{sku}" for sku in fx.cart_remove for kind in "iq"))
            for sku, line in fx.cart_add.items():
                # Adding the same item again adds to its quantity, without reading the cart first.
                details = {k: v for k, v in line.items() if k != "qty"}
                pipe.hset(keys.cart(cid), f"i:{sku}", orjson.dumps(details))
                pipe.hincrby(keys.cart(cid), f"q:{sku}", int(line.get("qty", 1)))
            last = orjson.dumps({"ts": fx.ts, **fx.event.attributes})
            pipe.eval(SET_LAST, 1, keys.last(cid), fx.event.type, fx.ts, last, now)
            pipe.lpush(keys.recent(cid), entry)
            pipe.ltrim(keys.recent(cid), 0, self.recent_limit - 1)
            pipe.xadd(keys.STREAM_EVENTS, {"customer_id": cid, "e": entry}, maxlen=self.stream_maxlen, approximate=True)
            if fx.triggers:
                positions = self._queue_triggers(pipe, cid, fx.triggers)
            if fx.event.type == "purchase":
                pipe.lpush(keys.purchases(cid), entry)
                pipe.ltrim(keys.purchases(cid), 0, PURCHASES_KEPT - 1)
            if fx.facts:
                # EVAL rather than EVALSHA: inside a pipeline a NOSCRIPT reply could not be
                # retried without applying the rest of the batch twice.
                pipe.eval(APPLY_FACTS, 1, keys.value_facts(cid), *_fact_ops(fx.facts))
            if fx.order is not None:
                pipe.hset(keys.orders(cid), fx.order[0], orjson.dumps({"status": fx.order[1], "ts": fx.ts}))
            if fx.voice is not None:
                pipe.eval(REMEMBER_TOPIC, 1, keys.topics(cid), f"{fx.voice[0]}:{fx.voice[1]}", fx.ts, MAX_TOPICS)
                day = keys.voice_day(keys.day_of(fx.ts))
                pipe.hincrby(day, f"{fx.voice[0]}:{fx.voice[1]}", 1)
                pipe.expire(day, keys.VOICE_TTL_S)
            watched.append(positions)
        replies = await self._execute(pipe)
        return [tuple(int(replies[i]) for i in positions) for positions in watched]

    async def voice_counts(self, days: Sequence[str]) -> dict[str, int]:
        """Summed `<kind>:<topic>` counts over the given days (yyyymmdd), one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(keys.voice_day(day))
        totals: dict[str, int] = {}
        for raw in await self._execute(pipe):
            for field, n in _ints(raw).items():
                totals[field] = totals.get(field, 0) + n
        return totals

    def _queue_triggers(self, pipe: Any, cid: str, fx: TriggerEffects) -> list[int]:
        """Queue a customer's trigger writes; returns where in the pipeline's replies the count of
        each watched counter will be."""
        # Timer marks first: a firing that runs after a cancelling event's mark is gone writes
        # nothing, and one that runs before it is overwritten by the event's flag writes that follow.
        for tid, until in fx.timers_cancel.items():
            pipe.eval(CANCEL_TIMER_MARK, 1, keys.timer_mark(cid, tid), until)
        for tid, (due, _) in fx.timers_set.items():
            wait = max(due - fx.now_ms, 0) if fx.now_ms is not None else 0
            pipe.eval(SET_TIMER_MARK, 1, keys.timer_mark(cid, tid), due, wait + TIMER_MARK_GRACE_MS)
        if fx.flags_set:
            pipe.hset(keys.flags(cid), mapping=fx.flags_set)
        if fx.flags_clear:
            pipe.hdel(keys.flags(cid), *fx.flags_clear)
        for name, ts, window_ms, cause in fx.increments:
            key = keys.counter(cid, name)
            now = fx.now_ms if fx.now_ms is not None else ts
            pipe.eval(INCREMENT, 1, key, f"{ts}:{cause}", ts, now - window_ms, window_ms, MAX_COUNTER_ENTRIES)
        positions = []
        for watched in fx.thresholds:
            then = watched.then
            flag, expiry = next(iter(then.flags_set.items()), ("", 0))
            member = f"{watched.ts}:{watched.cause}"
            now = fx.now_ms if fx.now_ms is not None else watched.ts
            counter_keys = [keys.counter(cid, watched.counter), keys.flags(cid)]
            mark: tuple[Any, int] = ("", 0)
            if watched.guard is not None:
                # The timer first, the mark (only if this occurrence reaches `at`) with the count:
                # a mark never stands without the timer that reads it.
                guard, due = watched.guard
                timer = (1, guard, due, orjson.dumps(crossing_payload(cid, watched)))
                pipe.eval(SCHEDULE_TIMERS, 3, *_timer_keys(keys.timer_shard(cid)), *timer)
                counter_keys.append(keys.timer_mark(cid, guard))
                mark = (due, max(due - now, 0) + TIMER_MARK_GRACE_MS)
            positions.append(len(pipe))
            limits = (watched.window_ms, MAX_COUNTER_ENTRIES, watched.at)
            args = (member, watched.ts, now, *limits, flag, expiry, *mark, *then.flags_clear)
            pipe.eval(COUNT_OCCURRENCE, len(counter_keys), *counter_keys, *args)
        if fx.timers_set or fx.timers_cancel:
            # A script, so that a worker holding a claim on one of these timers sees the change
            # whole (see engine.decision.timers); EVAL, as for value facts in apply_events.
            args: list[Any] = [len(fx.timers_set)]
            for tid, (due, payload) in fx.timers_set.items():
                args += (tid, due, orjson.dumps(payload))
            for tid, until in fx.timers_cancel.items():
                args += (tid, until)
            pipe.eval(SCHEDULE_TIMERS, 3, *_timer_keys(keys.timer_shard(cid)), *args)
        for message in fx.emits:
            pipe.xadd(keys.STREAM_OUTBOUND, {"m": orjson.dumps(message)}, maxlen=self.stream_maxlen, approximate=True)
        return positions

    async def apply_trigger_effects(self, effects: Sequence[tuple[str, TriggerEffects]]) -> None:
        """What counters that reached a threshold (or timers stored without a mark) do to their
        customers, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for cid, fx in effects:
            self._queue_triggers(pipe, cid, fx)
        await self._execute(pipe)

    async def send_crossings(self, crossings: Sequence[Crossing]) -> None:
        """The messages of thresholds just reached, in one round trip: the messages first, then the
        guard timers that would otherwise send them cancelled (see engine.rules.triggers.Threshold.guard),
        so a failure in between sends them again, with the same ids, rather than never."""
        pipe = self.client.pipeline(transaction=False)
        for cid, _, messages in crossings:
            self._queue_triggers(pipe, cid, TriggerEffects(emits=messages))
        for cid, (guard, due), _ in crossings:
            self._queue_triggers(pipe, cid, TriggerEffects(timers_cancel={guard: due}))
        await self._execute(pipe)

    async def fire_timers(self, timers: Sequence[tuple[str, str, int, TriggerEffects]]) -> list[bool]:
        """Apply fired timers, each `(customer, timer id, due, effects)`, to the customers they
        still belong to (see FIRE_TIMER): whether each was applied. Their writes go in one round
        trip, the messages of those applied in a second. A worker that dies between the two
        fires the timer again once its claim lapses: the mark then says `fired`, the writes are
        the same again and the messages go out with the same ids."""
        pipe = self.client.pipeline(transaction=False)
        for cid, tid, due, fx in timers:
            fired_keys = (keys.timer_mark(cid, tid), keys.flags(cid), *(keys.counter(cid, name) for name, *_ in fx.increments))
            pipe.eval(FIRE_TIMER, len(fired_keys), *fired_keys, due, FIRED_MARK_TTL_MS, _fired_writes(fx, due))
        applied = [bool(int(reply)) for reply in await self._execute(pipe)]
        messages = [
            (cid, TriggerEffects(emits=fx.emits)) for (cid, _, _, fx), ok in zip(timers, applied, strict=True) if ok and fx.emits
        ]
        if messages:
            await self.apply_trigger_effects(messages)
        return applied

    async def claim_timers(
        self, shard: int, now_ms: int, limit: int, lease_until_ms: int
    ) -> list[tuple[str, dict[str, Any] | None]]:
        """Timers due by `now_ms`, claimed until `lease_until_ms`, with their payloads (None where
        none is stored: a cancelled timer whose claim outlived it, completed without firing)."""
        async with self._guard():
            flat = await self._scripts.run("claim_timers", _timer_keys(shard), [now_ms, limit, lease_until_ms])
        pairs = _pairs(flat)
        return [(k.decode(), orjson.loads(v) if v else None) for k, v in pairs.items()]

    async def held_timers(self, shard: int, timer_ids: Sequence[str], lease_until_ms: int) -> set[str]:
        """Which of these timers are still claimed under this lease: the others were cancelled,
        started again or taken over since the claim, and must not fire on what was claimed."""
        if not timer_ids:
            return set()
        async with self._guard():
            held = await self._scripts.run("held_timers", [keys.timer_inflight(shard)], [lease_until_ms, *timer_ids])
        return {tid.decode() for tid in held}

    async def complete_timers(self, shard: int, timer_ids: Sequence[str], lease_until_ms: int) -> None:
        if timer_ids:
            async with self._guard():
                await self._scripts.run("complete_timers", _timer_keys(shard), [lease_until_ms, *timer_ids])

    async def pending_timers(self, shard: int) -> dict[str, int]:
        async with self._guard():
            rows = await self.client.zrange(keys.timer_due(shard), 0, -1, withscores=True)
        return {m.decode(): int(s) for m, s in rows}

    async def claim_feedback(self, feedback_id: str, decision_id: str) -> tuple[StoredDecision | None, bool]:
        async with self._guard():
            raw = await self.client.get(keys.decision(decision_id))
            if raw is None:
                return None, False
            claimed = await self.client.set(keys.feedback_seen(feedback_id), b"1", nx=True, ex=self.decision_ttl_s)
        return StoredDecision.from_stored(orjson.loads(raw)), bool(claimed)

    async def release_feedback(self, feedback_id: str) -> None:
        with contextlib.suppress(StoreUnavailable):
            async with self._guard():
                await self.client.delete(keys.feedback_seen(feedback_id))

    async def apply_feedback(self, feedback: Feedback, customer_id: str, ts: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(keys.responses(customer_id), f"{feedback.treatment_id}:{feedback.outcome}", 1)
        stats = keys.treatment_stats(feedback.treatment_id)
        pipe.hincrby(stats, feedback.outcome, 1)
        if feedback.value is not None:
            pipe.hincrbyfloat(stats, "value", feedback.value)
        entry = {
            "feedback_id": feedback.feedback_id,
            "decision_id": feedback.decision_id,
            "treatment_id": feedback.treatment_id,
            "customer_id": customer_id,
            "outcome": feedback.outcome,
            "value": feedback.value,
            "ts": ts,
        }
        pipe.xadd(keys.STREAM_FEEDBACK, {"f": orjson.dumps(entry)}, maxlen=self.stream_maxlen, approximate=True)
        await self._execute(pipe)

    async def read_history(self, customer_id: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, int]]:
        """Purchases (newest first), orders and feedback counts: the service view, off the hot path."""
        pipe = self.client.pipeline(transaction=False)
        pipe.lrange(keys.purchases(customer_id), 0, PURCHASES_KEPT - 1)
        pipe.hgetall(keys.orders(customer_id))
        pipe.hgetall(keys.responses(customer_id))
        purchases, orders, responses = await self._execute(pipe)
        return newest_first([orjson.loads(p) for p in purchases]), _loads_hash(orders), _ints(responses)

    async def read_responses(self, customer_id: str) -> dict[str, int]:
        async with self._guard():
            return _ints(await self.client.hgetall(keys.responses(customer_id)))

    async def bare_read(self, customer_id: str) -> bytes:
        """One HGETALL over the decisions' own connection, nothing else: the benchmark's baseline
        for what a Redis-backed endpoint costs."""
        (flat,) = await self._raw(("HGETALL", keys.profile(customer_id)))
        if isinstance(flat, Exception):
            raise StoreUnavailable(f"state store error: {flat}")
        return orjson.dumps({k.decode(): v.decode() for k, v in _pairs(flat).items()})

    async def bare_read_redis_py(self, customer_id: str) -> bytes:
        """The same HGETALL through redis-py's pooled client, the way a Redis-backed endpoint is
        usually written: the benchmark's conventional baseline."""
        async with self._guard():
            raw = await self.client.hgetall(keys.profile(customer_id))
        return orjson.dumps({k.decode(): v.decode() for k, v in raw.items()})

    async def seed_value_facts(self, rows: Sequence[tuple[str, dict[str, float]]]) -> None:
        """Replace customers' value facts wholesale (demo data; live events go through apply_events)."""
        pipe = self.client.pipeline(transaction=False)
        for cid, facts in rows:
            pipe.delete(keys.value_facts(cid))
            if facts:
                pipe.hset(keys.value_facts(cid), mapping={k: repr(float(v)) for k, v in facts.items()})
        await self._execute(pipe)

    async def seed_profiles(self, profiles: Sequence[tuple[str, dict[str, Any]]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for cid, profile in profiles:
            pipe.hset(keys.profile(cid), mapping={k: orjson.dumps(v) for k, v in profile.items()})
        await self._execute(pipe)
