"""Batch jobs over every customer: `nba equity recompute` and `nba clv fit`.

Both stream the customers' value facts from the store in chunks, so memory stays bounded by a
chunk (plus one float per customer for the summary's quantiles), and run the same compiled
kernels as the hot path, on a chunk at a time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from engine.equity.clv_fit import BGNBDFit, GammaGammaFit, fit_bgnbd, fit_gamma_gamma
from engine.equity.facts import facts_row
from engine.equity.value import LifetimeModel, ValueModel, purchase_history
from engine.errors import InvalidInput

MIN_CUSTOMERS_TO_FIT = 100
"""Fewer buyers than this cannot pin down four BG/NBD parameters; the fit is refused."""


class ValueSource(Protocol):
    def scan_facts(self, chunk: int = ...) -> AsyncIterator[list[tuple[str, dict[str, float]]]]: ...
    async def write_equity(self, rows: list[tuple[str, float, str]], at_ms: int) -> None: ...
    async def save_equity_summary(self, summary: dict[str, Any]) -> None: ...
    async def save_lifetime_model(self, model: dict[str, Any]) -> int: ...


@dataclass(frozen=True, slots=True)
class EquitySummary:
    customers: int
    per_tier: dict[str, int]
    mean: float | None
    p10: float | None
    p50: float | None
    p90: float | None
    computed_at_ms: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retention(values: ValueModel, facts: list[dict[str, float]], now_ms: int) -> np.ndarray:
    """P(alive) per customer from the lifetime model, NaN (loyalty falls back to recency) for
    customers with no purchase or when no model is fitted."""
    out = np.full(len(facts), np.nan)
    if values.lifetime is None:
        return out
    rows = [(i, h) for i, f in enumerate(facts) if (h := purchase_history(f, now_ms)) is not None]
    if rows:
        at = np.array([i for i, _ in rows])
        x, t_x, age, _ = (np.array(col, dtype=np.float64) for col in zip(*(h for _, h in rows), strict=True))
        out[at] = values.alive(x, t_x, age)
    return out


async def recompute_equity(
    store: ValueSource, values: ValueModel, now_ms: int, *, chunk: int = 5_000, on_progress: Callable[[int], None] | None = None
) -> EquitySummary:
    """Indices, equity and tier of every customer, written back as snapshots, with a summary."""
    started = time.perf_counter()
    names = values.tier_names
    per_tier = dict.fromkeys(names, 0)
    equities: list[np.ndarray] = []
    done = 0
    async for rows in store.scan_facts(chunk):
        facts = [f for _, f in rows]
        matrix = np.array([facts_row(f) for f in facts]).reshape(len(facts), -1)
        _, equity, ranks = values.evaluate_many(matrix, now_ms, retention(values, facts, now_ms))
        tiers = [names[r] for r in ranks.tolist()]
        await store.write_equity([(cid, e, t) for (cid, _), e, t in zip(rows, equity.tolist(), tiers, strict=True)], now_ms)
        for t in tiers:
            per_tier[t] += 1
        equities.append(equity)
        done += len(rows)
        if on_progress is not None:
            on_progress(done)
    everyone = np.concatenate(equities) if equities else np.empty(0)
    q = np.quantile(everyone, [0.1, 0.5, 0.9]).tolist() if everyone.size else [None, None, None]
    summary = EquitySummary(
        customers=int(everyone.size),
        per_tier=per_tier,
        mean=float(everyone.mean()) if everyone.size else None,
        p10=q[0],
        p50=q[1],
        p90=q[2],
        computed_at_ms=now_ms,
        seconds=time.perf_counter() - started,
    )
    await store.save_equity_summary(summary.to_dict())
    return summary


@dataclass(frozen=True, slots=True)
class LifetimeFit:
    model: LifetimeModel
    purchases: BGNBDFit
    spend: GammaGammaFit
    seconds: float


async def fit_lifetime(
    store: ValueSource, now_ms: int, *, chunk: int = 5_000, on_progress: Callable[[int], None] | None = None
) -> LifetimeFit:
    """Fit BG/NBD and Gamma-Gamma on every buyer's history (days) and store them as a new version.

    Gamma-Gamma is fitted on customers with at least one repeat purchase, as the model requires;
    their mean order value includes the first order (the facts keep one total), a small
    departure from the textbook's repeat-orders-only mean.
    """
    started = time.perf_counter()
    history: list[tuple[float, float, float, float]] = []
    seen = 0
    async for rows in store.scan_facts(chunk):
        history.extend(h for _, f in rows if (h := purchase_history(f, now_ms)) is not None)
        seen += len(rows)
        if on_progress is not None:
            on_progress(seen)
    if len(history) < MIN_CUSTOMERS_TO_FIT:
        raise InvalidInput(
            f"only {len(history)} customers have bought anything; a lifetime-value fit needs at least {MIN_CUSTOMERS_TO_FIT}",
            field="customers",
        )
    x, t_x, age, m = (np.array(col, dtype=np.float64) for col in zip(*history, strict=True))
    try:
        purchases = fit_bgnbd(x, t_x, age)
        repeat = x >= 1
        spend = fit_gamma_gamma(x[repeat], m[repeat])
    except ValueError as exc:
        raise InvalidInput(f"lifetime-value fit refused: {exc}", field="customers") from exc
    stored = {
        "purchases": purchases.params.to_dict(),
        "spend": spend.params.to_dict(),
        "fitted_at_ms": now_ms,
        "customers": len(history),
        "unit": "days",
        "diagnostics": {"purchases": purchases.to_dict(), "spend": spend.to_dict()},
    }
    version = await store.save_lifetime_model(stored)
    model = LifetimeModel.from_dict({**stored, "version": version})
    return LifetimeFit(model, purchases, spend, time.perf_counter() - started)
