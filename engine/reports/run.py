"""Gathering what the reports need from the store: the logs of the window and, for ROI, what
each treatment costs today and each customer's value now. Shared by `nba report roi|arms` and
`GET /v1/reports/roi|arms`, so the command line and the API report the same numbers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.equity.value import ValueModel
from engine.errors import InvalidInput
from engine.reports.arms import ArmsReport, arms_report
from engine.reports.roi import RoiReport, TreatmentEconomics, roi_report
from engine.rules.ruleset import RuleSet
from engine.state.log_reader import read_logs
from engine.state.value_store import ValueStore

if TYPE_CHECKING:  # the client is only passed through to engine.state, which talks to Redis
    from redis import asyncio as aioredis


MS_PER_DAY = 86_400_000
MAX_DAYS = 366


def economics_of(rules: RuleSet) -> dict[str, TreatmentEconomics]:
    return {
        t.id: TreatmentEconomics(t.cost_per_show, t.cost_per_accept, t.brand, t.campaign)
        for t in (*rules.treatments, *rules.fallback)
    }


def _window_start(now_ms: int, days: int) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be from 1 to {MAX_DAYS}, got {days}", field="days")
    return now_ms - days * MS_PER_DAY


async def run_roi(client: aioredis.Redis, rules: RuleSet, values: ValueModel, now_ms: int, days: int) -> RoiReport:
    """The report over the last `days` days up to `now_ms`."""
    since = _window_start(now_ms, days)
    # Read to the end of the streams and let the report window by each record's own `ts`: entry
    # ids carry the Redis server's clock, which need not agree with the engine's to the second.
    logs = await read_logs(client, since_ms=since)
    customers = sorted({str(d.get("customer_id")) for d in logs.decisions})
    facts = await ValueStore(client).read_facts(customers)
    current: dict[str, tuple[float, float | None]] = {}
    for cid in customers:
        value = values.evaluate(facts.get(cid, {}), now_ms)
        current[cid] = (value.equity, value.clv)
    return roi_report(logs.decisions, logs.feedback, economics_of(rules), current, since_ms=since, until_ms=now_ms)


async def run_arms(client: aioredis.Redis, now_ms: int, days: int) -> ArmsReport:
    """The experiment arms over the last `days` days up to `now_ms` (windowed by each record's `ts`)."""
    since = _window_start(now_ms, days)
    logs = await read_logs(client, since_ms=since)
    return arms_report(logs.decisions, logs.feedback, since_ms=since, until_ms=now_ms)
