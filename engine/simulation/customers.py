"""Customers for a rule simulation: as columns for the vectorised conditions, and one at a time
for the decision pipeline.

A `CustomerBatch` holds both views of the same customers: `columns` in the layout
`engine.rules.vectorised` reads (profile and cart fields, history times), the value facts as a
matrix (the rule set being simulated turns them into `value.*`), and `state(row)`, the
`CustomerState` that `decide` reads. They come from

* `synthetic_customers`: a seeded population consistent with a rule set's declared fields, with
  recent events, flags, counters, complaints, carts and value histories, generated as columns
  (a million in a second or two) and turned into a state only for the rows that need one;
* `load_customers`: the customers in Redis, read in pipelined chunks (engine.state.customer_scan);
* `batch_from_states`: any list of states, the columns built from them.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.clock import MS_PER_DAY, MS_PER_HOUR
from engine.decision.pipeline import eval_context
from engine.domain import CustomerState, DecisionRequest
from engine.equity.facts import N_FACTS, facts_row
from engine.rules.ruleset import RuleSet
from engine.rules.vectorised import (
    columns_from_contexts,
    complaint_topic,
    counter_column,
    flag_column,
    last_ts_column,
    recent_ts_column,
    topic_column,
)
from engine.rules.vocabulary import EvalContext
from engine.seed import AIRPORTS, SEGMENTS, TIER_WEIGHTS, TIERS, demo_value_facts, synthetic_id
from engine.state.customer_scan import CustomerScan

if TYPE_CHECKING:  # the client is only passed through to engine.state, which talks to Redis
    from redis import asyncio as aioredis


@dataclass(frozen=True, slots=True)
class CustomerBatch:
    ids: np.ndarray
    """object[n]: customer ids."""
    columns: Mapping[str, np.ndarray]
    """Profile (`customer.*`), cart (`cart.*`) and history columns (engine.rules.vectorised)."""
    facts: np.ndarray
    """float64[n, N_FACTS]: value facts in FACT_FIELDS order."""
    inexact: np.ndarray
    """bool[n]: rows the columns cannot represent exactly; conditions ask their state instead."""
    _state: Callable[[int], CustomerState] = field(repr=False)
    lookbacks: Mapping[str, float | None] = field(default_factory=dict)
    """The look-backs the history columns were built for (engine.decision.pipeline.history_for_conditions);
    a condition asking a row's state reads it the same way."""

    def __len__(self) -> int:
        return len(self.ids)

    def state(self, row: int) -> CustomerState:
        """The customer of this row as a decision reads it."""
        return self._state(row)


_NO_REQUEST = DecisionRequest("", "web")
"""Columns hold what the customer's state says; a simulated request's context is added apart."""


def _context(state: CustomerState, lookbacks: Mapping[str, float | None], now_ms: int) -> EvalContext:
    """What conditions read of a stored customer, as a decision at `now_ms` reads it (the request
    adds `context`, the rule set `value`)."""
    return eval_context(state, _NO_REQUEST, now_ms, None, lookbacks)


def batch_from_states(
    states: Sequence[CustomerState], lookbacks: Mapping[str, float | None] | None = None, now_ms: int = 0
) -> CustomerBatch:
    """`lookbacks` (the simulated rule sets' look-backs, merged) and `now_ms` choose, per customer,
    the history `count` and `exists` read, as a decision at `now_ms` would."""
    lookbacks = dict(lookbacks or {})
    columns, inexact = columns_from_contexts([_context(s, lookbacks, now_ms) for s in states])
    facts = np.array([facts_row(s.facts) for s in states], dtype=np.float64).reshape(len(states), N_FACTS)
    ids = np.fromiter((s.customer_id for s in states), dtype=object, count=len(states))
    return CustomerBatch(ids, columns, facts, inexact, list(states).__getitem__, lookbacks)


async def load_customers(
    client: aioredis.Redis,
    *,
    now_ms: int,
    recent_limit: int,
    counters: Sequence[str] = (),
    lookbacks: Mapping[str, float | None] | None = None,
    limit: int | None = None,
    chunk: int = 1_000,
    progress: Callable[[int], None] | None = None,
) -> CustomerBatch:
    """Every customer with a profile in Redis (at most `limit`), read as a decision at `now_ms`
    would read them; `counters` are the counters the simulated rule sets read. `progress` is
    called with the number of customers each chunk added."""
    scan = CustomerScan(client, recent_limit=recent_limit, counters=counters)
    states: list[CustomerState] = []
    async for part in scan.scan(now_ms, chunk=chunk, limit=limit):
        states.extend(part)
        if progress is not None:
            progress(len(part))
    return batch_from_states(states, lookbacks, now_ms)


# --- synthetic customers -----------------------------------------------------------------------

_DEMO_FIELDS: dict[str, str] = {
    "name": "string",
    "tier": "string",
    "age": "number",
    "segment": "string",
    "home_airport": "string",
    "loyalty_points": "number",
    "email_opt_in": "bool",
}
"""Fields `engine.seed.demo_profiles` fills, generated with its distributions when declared so."""
_DEMO_CHOICES: dict[str, tuple[Sequence[Any], ...]] = {
    "tier": (TIERS, TIER_WEIGHTS),
    "segment": (SEGMENTS,),
    "home_airport": (AIRPORTS,),
}
DEMO_MISSING = 0.02
OTHER_MISSING = 0.75
"""Share of customers without a value: demo fields are nearly always known; other declared
fields (answers to questions, say) mostly are not."""

_EVENTS: dict[str, tuple[float, int, float, float]] = {
    "page_view": (1.2, 6, 10, 0.5),
    "email_received": (0.12, 2, 14, 0.2),
    "complaint": (0.05, 1, 20, 0.1),
    "flight_delayed": (0.04, 1, 5, 0.1),
    "social_mention": (0.08, 2, 30, 0.1),
    "call_started": (0.05, 1, 30, 0.1),
    "checkout": (0.05, 1, 10, 0.3),
}
"""Event type -> (mean recent events, most kept, within how many days, share of the others whose
newest event of that type is older than the recent history)."""
CART_SHARE = 0.15
CART_SKUS = 40
FLAG_SHARE = 0.06
COUNTER_SHARE = 0.3
COUNTER_MOST = 5
TOPIC_SHARE = 0.05
RECENT_PURCHASE_DAYS = 30
NEW_SHARE = 0.12
"""Share of customers with no value history at all (never bought, never complained)."""
FACTS_POOL = 10_000
"""Value histories are drawn for this many customers (engine.seed.demo_value_facts costs ~80 µs
each) and dealt out to the batch."""


def complaint_topics(rules: RuleSet) -> list[str]:
    """Topics the rule set's `complained_about(...)` conditions name."""
    conditions = [c for t in rules.treatments for c in (t.eligibility, *(w for w, _ in t.context_weights)) if c is not None]
    topics = set()
    for condition in conditions:
        for node in ast.walk(ast.parse(condition.source.strip(), mode="eval")):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "complained_about":
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    topics.add(arg.value)
    return sorted(topics)


def _counter_windows(rules: RuleSet) -> dict[str, int]:
    windows = {name: 7 * MS_PER_DAY for name in rules.vocabulary.counters}
    for t in rules.triggers:
        for actions in (t.spec, t.spec.schedule.then if t.spec.schedule else None):
            if actions is not None and actions.increment is not None:
                windows[actions.increment.counter] = actions.increment.window.ms
    return windows


def _times(rng: np.random.Generator, counts: np.ndarray, most: int, now_ms: int, span_ms: float) -> np.ndarray:
    """[n, most] times within `span_ms` before now, newest first, NaN beyond each row's count."""
    n = len(counts)
    times = (now_ms - rng.integers(0, max(int(span_ms), 1), size=(n, most))).astype(np.float64)
    times = -np.sort(-times, axis=1)
    times[np.arange(most)[None, :] >= counts[:, None]] = math.nan
    return times


class _Synthetic:
    """Generates the columns, and rebuilds any row's state from them."""

    def __init__(self, n: int, seed: int, rules: RuleSet, now_ms: int, facts_pool: int) -> None:
        self.n, self.now = n, now_ms
        self.rng = np.random.default_rng(seed)
        self.ids = np.fromiter((synthetic_id(i + 1) for i in range(n)), dtype=object, count=n)
        self.columns: dict[str, np.ndarray] = {}
        self.integral: set[str] = set()
        self.profile_keys: list[tuple[str, str]] = []
        self._profile(rules.vocabulary.namespaces.get("customer", {}))
        self._facts(rules, seed, facts_pool)
        self._cart()
        self.recent: dict[str, np.ndarray] = {}
        self._events(rules.vocabulary.event_types)
        self.flag_names = sorted(rules.vocabulary.flags)
        self._flags()
        self.counter_names = sorted(rules.vocabulary.counters)
        self._counters(_counter_windows(rules))
        self.topic_keys = [complaint_topic(t) for t in sorted({*complaint_topics(rules), "delay"})]
        self._topics()

    def _missing(self, share: float) -> np.ndarray:
        return self.rng.random(self.n) < share

    def _choice(self, options: Sequence[Any], p: Sequence[float] | None = None) -> np.ndarray:
        weights = None if p is None else np.asarray(p) / np.sum(p)
        pool = np.fromiter(options, dtype=object, count=len(options))  # a list option stays one value
        return pool[self.rng.choice(len(options), size=self.n, p=weights)]

    def _profile(self, declared: Mapping[str, str]) -> None:
        rng, n = self.rng, self.n
        for name, kind in declared.items():
            key = f"customer.{name}"
            demo = _DEMO_FIELDS.get(name) == kind
            if demo and name == "name":
                values: np.ndarray = np.fromiter((f"Customer {i + 1}" for i in range(n)), dtype=object, count=n)
            elif demo and name in ("tier", "segment", "home_airport"):
                values = self._choice(*{"tier": (TIERS, TIER_WEIGHTS), "segment": (SEGMENTS,), "home_airport": (AIRPORTS,)}[name])
            elif demo and name in ("age", "loyalty_points"):
                values = rng.integers(*((18, 81) if name == "age" else (0, 100_001)), size=n).astype(np.float64)
            elif demo or kind == "bool":
                values = (rng.random(n) < 0.6).astype(object)
            elif kind == "number":
                values = rng.integers(0, 10, size=n).astype(np.float64)
            elif kind == "timestamp":
                values = (self.now - rng.integers(0, 365 * MS_PER_DAY, size=n)).astype(np.float64)
            elif kind == "list":
                values = self._choice([[f"{name}_{k}"] for k in range(1, 4)] + [[]])
            else:
                values = self._choice([f"{name}_{k}" for k in range(1, 5)])
            missing = self._missing(0.0 if demo and name == "name" else DEMO_MISSING if demo else OTHER_MISSING)
            if values.dtype == object:
                values[missing] = None
            else:
                values[missing] = math.nan
                self.integral.add(key)
            self.columns[key] = values
            self.profile_keys.append((name, key))

    def _facts(self, rules: RuleSet, seed: int, pool: int) -> None:
        size = max(min(self.n, pool), 1)
        ids = [synthetic_id(i + 1) for i in range(size)]
        self.pool = [f for _, f in demo_value_facts(ids, self.now, rules.equity, seed)] + [{}]
        rows = np.array([facts_row(f) for f in self.pool], dtype=np.float64).reshape(size + 1, N_FACTS)
        self.pool_of = np.arange(self.n) % size if self.n <= size else self.rng.integers(0, size, size=self.n)
        self.pool_of[self._missing(NEW_SHARE)] = size
        self.facts = rows[self.pool_of]

    def _cart(self) -> None:
        rng, n = self.rng, self.n
        self.items = np.where(rng.random(n) < CART_SHARE, rng.integers(1, 4, size=n), 0)
        self.first_sku = rng.integers(0, CART_SKUS, size=n)
        self.prices = (rng.integers(2, 81, size=(n, 3)) * 5).astype(np.float64)
        self.prices[np.arange(3)[None, :] >= self.items[:, None]] = 0.0
        value = np.zeros(n)
        for j in range(3):  # added line by line, as CustomerState.cart_summary does
            value = value + self.prices[:, j]
        skus = np.empty(n, dtype=object)
        skus.fill([])
        for i in np.flatnonzero(self.items):
            skus[i] = self.skus(i)
        self.columns.update({"cart.value": value, "cart.items": self.items.astype(np.float64), "cart.skus": skus})

    def skus(self, i: int) -> list[str]:
        return [f"sku-{(int(self.first_sku[i]) + 7 * j) % CART_SKUS:03d}" for j in range(int(self.items[i]))]

    def _events(self, known: frozenset[str]) -> None:
        rng, n, now = self.rng, self.n, self.now
        plan = {t: spec for t, spec in _EVENTS.items() if t in known}
        for event_type, (mean, most, days, older) in plan.items():
            times = _times(rng, np.minimum(rng.poisson(mean, size=n), most), most, now, days * MS_PER_DAY)
            self._event_columns(event_type, times, older_share=older, older_than=days)
        if "cart_add" in known:
            times = _times(rng, np.minimum(self.items, 1), 1, now, 2 * MS_PER_HOUR)
            self._event_columns("cart_add", times, older_share=0.2, older_than=1)
        if "purchase" in known:
            last = np.array([f.get("last_purchase_ms", 0.0) for f in self.pool])[self.pool_of]
            last = np.where(last > 0, last, math.nan)
            self.columns[last_ts_column("purchase")] = last
            recent = np.where(last >= now - RECENT_PURCHASE_DAYS * MS_PER_DAY, last, math.nan)
            self.recent["purchase"] = self.columns[recent_ts_column("purchase")] = recent[:, None]

    def _event_columns(self, event_type: str, times: np.ndarray, *, older_share: float, older_than: float) -> None:
        newest = times[:, 0].copy()
        older = np.isnan(newest) & self._missing(older_share)
        ago = (older_than + self.rng.uniform(0, 180, size=self.n)) * MS_PER_DAY
        newest[older] = np.floor(self.now - ago[older])
        self.columns[last_ts_column(event_type)] = newest
        self.recent[event_type] = self.columns[recent_ts_column(event_type)] = times

    def _flags(self) -> None:
        for name in self.flag_names:
            expires = (self.now + self.rng.integers(60_000, 3 * MS_PER_DAY, size=self.n)).astype(np.float64)
            expires[~self._missing(FLAG_SHARE)] = math.nan
            self.columns[flag_column(name)] = expires

    def _counters(self, windows: Mapping[str, int]) -> None:
        for name in self.counter_names:
            counts = np.where(self._missing(COUNTER_SHARE), self.rng.integers(1, COUNTER_MOST + 1, size=self.n), 0)
            self.columns[counter_column(name)] = _times(self.rng, counts, COUNTER_MOST, self.now, windows[name])

    def _topics(self) -> None:
        for key in self.topic_keys:
            said = (self.now - self.rng.integers(0, 120 * MS_PER_DAY, size=self.n)).astype(np.float64)
            said[~self._missing(TOPIC_SHARE)] = math.nan
            self.columns[topic_column(key)] = said

    # --- one row back as a state ---------------------------------------------------------------

    def state(self, i: int) -> CustomerState:
        cid = str(self.ids[i])
        facts = self.pool[int(self.pool_of[i])]
        return CustomerState(
            customer_id=cid,
            profile=self._row_profile(i),
            cart={sku: {"price": float(self.prices[i, j]), "qty": 1} for j, sku in enumerate(self.skus(i))},
            last=self._row_last(i, facts),
            recent=self._row_recent(cid, i),
            flags={name: int(v) for name in self.flag_names if not math.isnan(v := self.columns[flag_column(name)][i])},
            counters={
                name: [int(t) for t in self.columns[counter_column(name)][i].tolist() if not math.isnan(t)]
                for name in self.counter_names
            },
            topics={key: int(v) for key in self.topic_keys if not math.isnan(v := self.columns[topic_column(key)][i])},
            facts=facts,
        )

    def _row_counter(self, name: str, i: int) -> list[int]:
        return [int(t) for t in self.columns[counter_column(name)][i].tolist() if not math.isnan(t)]

    def _row_profile(self, i: int) -> dict[str, Any]:
        profile: dict[str, Any] = {}
        for name, key in self.profile_keys:
            v = self.columns[key][i]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            profile[name] = int(v) if key in self.integral else v
        return profile

    def _row_last(self, i: int, facts: Mapping[str, float]) -> dict[str, dict[str, Any]]:
        last: dict[str, dict[str, Any]] = {}
        for event_type in self.recent:
            ts = self.columns[last_ts_column(event_type)][i]
            if not math.isnan(ts):
                last[event_type] = {"ts": int(ts)}
        if "purchase" in last and facts.get("order_count"):
            last["purchase"]["amount"] = round(facts.get("spend_total", 0.0) / facts["order_count"], 2)
        return last

    def _row_recent(self, cid: str, i: int) -> list[dict[str, Any]]:
        events = [
            {"event_id": f"{cid}:{event_type}:{j}", "type": event_type, "ts": int(ts), "channel": "web", "attributes": {}}
            for event_type, times in self.recent.items()
            if not math.isnan(times[i, 0])
            for j, ts in enumerate(times[i].tolist())
            if not math.isnan(ts)
        ]
        events.sort(key=lambda ev: -ev["ts"])
        return events


def synthetic_customers(n: int, seed: int, rules: RuleSet, *, now_ms: int, facts_pool: int = FACTS_POOL) -> CustomerBatch:
    """`n` customers (`cust-000001` ...) consistent with the rule set's declared customer fields,
    flags, counters and event types, as of `now_ms`; the same seed gives the same customers."""
    gen = _Synthetic(n, seed, rules, now_ms, facts_pool)
    return CustomerBatch(gen.ids, gen.columns, gen.facts, np.zeros(n, dtype=bool), gen.state)
