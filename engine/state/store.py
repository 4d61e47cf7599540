"""The state store interface the core depends on; `redis_store` is its only implementation.

Keeping this a Protocol lets the decision service be read (and reasoned about) without any
Redis detail, and keeps the redis client out of every module but one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from engine.domain import CustomerState, Feedback, StoredDecision
from engine.rules.triggers import Crossing


class Store(Protocol):
    async def ping(self) -> bool: ...

    async def read_customer(
        self, customer_id: str, now_ms: int, *, with_recent: bool, counters: Sequence[str] = ()
    ) -> CustomerState:
        """Everything a decision needs, in one round trip."""
        ...

    async def write_decision(self, record: StoredDecision, counter_fields: Sequence[str]) -> None:
        """Impression counters, the decision record (with TTL) and a decisions-stream entry, in one round trip."""
        ...

    async def claim_events(self, keys: Sequence[tuple[str, str]]) -> list[bool]:
        """Mark (customer_id, event_id) pairs as seen; True where this call saw it first."""
        ...

    async def release_events(self, keys: Sequence[tuple[str, str]]) -> None: ...

    async def apply_events(self, effects: Sequence[Any], now_ms: int | None = None) -> list[tuple[int, ...]]:
        """Apply events in one round trip; per event, the counts of the counters its triggers watch."""
        ...

    async def send_crossings(self, crossings: Sequence[Crossing]) -> None:
        """The messages of thresholds reached (engine.rules.triggers.Crossing), and their guard
        timers cancelled, in one round trip."""
        ...

    async def claim_feedback(self, feedback_id: str, decision_id: str) -> tuple[StoredDecision | None, bool]:
        """The decision record, and whether this feedback id is new (claimed only if the decision exists)."""
        ...

    async def apply_feedback(self, feedback: Feedback, customer_id: str, ts: int) -> None: ...

    async def release_feedback(self, feedback_id: str) -> None: ...

    async def read_responses(self, customer_id: str) -> dict[str, int]: ...

    async def read_history(self, customer_id: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, int]]: ...

    async def voice_counts(self, days: Sequence[str]) -> dict[str, int]: ...
