"""Every Redis key the engine uses, built in one place.

All keys of one customer share the hash tag `{customer_id}`, so a customer's reads and writes
are one pipeline on one node, in Redis Cluster too. Time windows are encoded in key names with
a TTL (`caps:d:20261123`), so nothing ever sweeps the keyspace.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

STREAM_EVENTS = "s:events"
STREAM_DECISIONS = "s:decisions"
STREAM_FEEDBACK = "s:feedback"
STREAM_OUTBOUND = "s:outbound"
"""Messages triggers emit for push, email and SMS senders (each entry `m` = JSON with an `id`)."""
STREAM_OUTBOUND_DEAD = "s:outbound:dead"
"""Outbound messages the webhook sender gave up on: `m` as on the outbound stream, plus the
entry id, the attempts made and the last failure."""

DAY_CAPS_TTL_S = 2 * 86_400
WEEK_CAPS_TTL_S = 8 * 86_400


def _c(customer_id: str) -> str:
    return "c:{" + customer_id + "}"


_PROFILE, _CART, _LAST, _RECENT, _FLAGS, _TOPICS, _VALUE = ":profile", ":cart", ":last", ":recent", ":flags", ":topics", ":value"
_CAPS_DAY, _CAPS_WEEK, _CAPS_ALL, _COUNTER, _DECISION = ":caps:d:", ":caps:w:", ":caps:all", ":cnt:", ":d:"


def profile(customer_id: str) -> str:
    return _c(customer_id) + _PROFILE


def profile_times(customer_id: str) -> str:
    """Hash: profile field -> the `ts` of the event that set it, so a late event cannot overwrite a
    newer value (fields set otherwise, by seeding or import, have none: any event replaces them)."""
    return _c(customer_id) + ":ptimes"


def cart(customer_id: str) -> str:
    return _c(customer_id) + _CART


def last(customer_id: str) -> str:
    """Hash: event type -> newest event of that type (JSON with `ts`)."""
    return _c(customer_id) + _LAST


def recent(customer_id: str) -> str:
    """List of interactions, newest first, trimmed to a bound."""
    return _c(customer_id) + _RECENT


def flags(customer_id: str) -> str:
    """Hash: flag name -> expiry (ms); expired entries are ignored when read and overwritten later."""
    return _c(customer_id) + _FLAGS


def counter(customer_id: str, name: str) -> str:
    """Sorted set of `<ts>:<cause>` by ts, trimmed to the counter's window on every increment."""
    return _c(customer_id) + _COUNTER + name


def timer_mark(customer_id: str, timer_id: str) -> str:
    """String: the due time of the customer's pending timer (`fired:<due>` once fired). Kept in
    the customer's slot, beside the flags a timer sets, so a firing and a cancelling event are
    ordered there (engine.state.scripts.FIRE_TIMER); the timer itself lives on its shard."""
    return _c(customer_id) + ":tm:" + timer_id


def topics(customer_id: str) -> str:
    """Hash `<liked|disliked|ideas>:<topic>` -> when this customer last said so: close-the-loop
    offers read one small hash instead of scanning the interaction history."""
    return _c(customer_id) + _TOPICS


def value_facts(customer_id: str) -> str:
    """Hash of the customer's value facts (engine.equity.facts): decayed sums kept by atomic
    increments, and first/last times kept by min/max, so no event needs a read first."""
    return _c(customer_id) + _VALUE


VALUE_FACTS_PATTERN = "c:{*}:value"
"""SCAN pattern of every customer's value facts, for batch jobs (`nba equity recompute`, `nba clv fit`)."""


def customer_of_value_facts(key: str) -> str:
    return key[len("c:{") : -len("}:value")]


def equity_snapshot(customer_id: str) -> str:
    """Hash `equity`, `tier`, `at`: the last batch recompute, for segment lists and reports."""
    return _c(customer_id) + ":equity"


LIFETIME_MODEL = "v:lifetime"
"""The current lifetime-value model (JSON with its version), read by every serving process."""
LIFETIME_VERSION = "v:lifetime:version"
EQUITY_SUMMARY = "v:equity:summary"
"""JSON summary of the last batch recompute: customers per tier, mean, quantiles, when."""


def lifetime_model_version(version: int) -> str:
    """Every fitted lifetime model is kept under its version, so a fit can be compared or rolled back."""
    return f"v:lifetime:{version}"


def purchases(customer_id: str) -> str:
    """List of purchases, newest first, trimmed: the history a service rep sees."""
    return _c(customer_id) + ":purchases"


def orders(customer_id: str) -> str:
    """Hash: order id -> {status, ts} as last reported."""
    return _c(customer_id) + ":orders"


def responses(customer_id: str) -> str:
    return _c(customer_id) + ":responses"


def event_seen(customer_id: str, event_id: str) -> str:
    return _c(customer_id) + ":ev:" + event_id


@lru_cache(maxsize=64)
def _day_names(day_number: int) -> tuple[str, str]:
    """(yyyymmdd, yyyyWww) of a UTC day, cached: every decision needs them, few days are live."""
    date = datetime.fromtimestamp(day_number * 86_400, UTC)
    year, week, _ = date.isocalendar()
    return date.strftime("%Y%m%d"), f"{year}W{week:02d}"


def _days(now_ms: int) -> tuple[str, str]:
    return _day_names(now_ms // 86_400_000)


def day_of(now_ms: int) -> str:
    return _days(now_ms)[0]


def week_of(now_ms: int) -> str:
    return _days(now_ms)[1]


def caps_day(customer_id: str, now_ms: int) -> str:
    return _c(customer_id) + _CAPS_DAY + day_of(now_ms)


def caps_week(customer_id: str, now_ms: int) -> str:
    return _c(customer_id) + _CAPS_WEEK + week_of(now_ms)


DECISION_NONCE_CHARS = 32


def new_decision_id(nonce_hex: str, customer_id: str) -> str:
    """`<32 hex chars>-<customer id>`: feedback carries only the decision id, and this lets it
    find the record inside the customer's hash slot, so the write-back is one script on one node."""
    return nonce_hex + "-" + customer_id


def customer_of_decision(decision_id: str) -> str | None:
    if len(decision_id) <= DECISION_NONCE_CHARS + 1 or decision_id[DECISION_NONCE_CHARS] != "-":
        return None
    return decision_id[DECISION_NONCE_CHARS + 1 :]


def caps_total(customer_id: str) -> str:
    """Impressions ever, per treatment (`t:`) only: lifetime caps; no TTL."""
    return _c(customer_id) + _CAPS_ALL


def decision(decision_id: str) -> str:
    """The decision record; `d:<id>` only for ids not made by `new_decision_id` (never stored)."""
    customer_id = customer_of_decision(decision_id)
    if customer_id is None:
        return "d:" + decision_id
    return _c(customer_id) + _DECISION + decision_id[:DECISION_NONCE_CHARS]


def state_keys(customer_id: str, now_ms: int, counters: Sequence[str]) -> list[str]:
    """The keys a customer's state is read from, in the order of the read script's document
    (engine.state.scripts.READ_CUSTOMER): as the functions above name them, with the customer's
    prefix and the day's names worked out once, since every decision reads a dozen of them."""
    c = _c(customer_id)
    day, week = _days(now_ms)
    return [
        c + _PROFILE,
        c + _CART,
        c + _LAST,
        c + _CAPS_DAY + day,
        c + _CAPS_WEEK + week,
        c + _RECENT,
        c + _FLAGS,
        c + _CAPS_ALL,
        c + _TOPICS,
        c + _VALUE,
        *[c + _COUNTER + name for name in counters],
    ]


def write_back_keys(customer_id: str, now_ms: int, decision_id: str) -> list[str]:
    """The keys a decision's write-back script takes: the day's, the week's and the lifetime caps,
    and the record (engine.state.scripts.WRITE_DECISION), the prefix and names worked out once."""
    c = _c(customer_id)
    day, week = _days(now_ms)
    return [c + _CAPS_DAY + day, c + _CAPS_WEEK + week, decision(decision_id), c + _CAPS_ALL]


def feedback_seen(feedback_id: str) -> str:
    return "fb:" + feedback_id


VOICE_TTL_S = 400 * 86_400


def voice_day(day: str) -> str:
    """Hash `<liked|disliked|ideas>:<topic>` -> count, one per UTC day (kept 400 days)."""
    return "voice:" + day


def treatment_stats(treatment_id: str) -> str:
    return "stats:t:" + treatment_id


def treatment_cap_field(treatment_id: str) -> str:
    return "t:" + treatment_id


def group_cap_field(group: str) -> str:
    return "g:" + group


# -- models: every key of one model shares the hash tag `{m:<model>}` -----------------------------

MODEL_UPDATES_CHANNEL = "m:updates"


def model_prefix(model_id: str) -> str:
    return "m:{" + model_id + "}"


def model_snapshot(model_id: str) -> str:
    """Hash: the learner snapshot (pickled state, meta with stream positions)."""
    return model_prefix(model_id) + ":snapshot"


def model_served(model_id: str) -> str:
    """Hash: the published sparse weights, bias, evidence and version that serving installs."""
    return model_prefix(model_id) + ":served"


def model_due(model_id: str) -> str:
    """Sorted set `decision_id|treatment_id` by the time its reward window closes."""
    return model_prefix(model_id) + ":due"


def model_positives(model_id: str) -> str:
    """Hash of `decision_id|treatment_id` -> the strongest positive learned for that impression,
    kept while its decision record lives, so a later, stronger outcome adds only the difference
    and a closed window knows it needs no negative."""
    return model_prefix(model_id) + ":pos"


def model_positives_until(model_id: str) -> str:
    """Sorted set: impression -> when its recorded positive may be forgotten (its decision expired)."""
    return model_prefix(model_id) + ":pos:until"


def model_version(model_id: str) -> str:
    """Counter of published versions."""
    return model_prefix(model_id) + ":version"


def model_lease(model_id: str) -> str:
    return model_prefix(model_id) + ":lease"


# -- durable timers: sharded so that Redis Cluster spreads them ----------------------------------

TIMER_SHARDS = 16


def timer_shard(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode()) % TIMER_SHARDS


def timer_due(shard: int) -> str:
    """Sorted set: timer id -> due time (ms)."""
    return "tm:{" + str(shard) + "}:due"


def timer_inflight(shard: int) -> str:
    """Sorted set: timers being fired -> when their claim lapses (then they are fired again)."""
    return "tm:{" + str(shard) + "}:inflight"


def timer_data(shard: int) -> str:
    """Hash: timer id -> JSON payload (trigger, customer, due)."""
    return "tm:{" + str(shard) + "}:data"
