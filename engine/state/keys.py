"""Every Redis key the engine uses, built in one place.

All keys of one customer share the hash tag `{customer_id}`, so a customer's reads and writes
are one pipeline on one node, in Redis Cluster too. Time windows are encoded in key names with
a TTL (`caps:d:20261123`), so nothing ever sweeps the keyspace.
"""

from __future__ import annotations

from datetime import UTC, datetime

STREAM_EVENTS = "s:events"
STREAM_DECISIONS = "s:decisions"
STREAM_FEEDBACK = "s:feedback"

DAY_CAPS_TTL_S = 2 * 86_400
WEEK_CAPS_TTL_S = 8 * 86_400


def _c(customer_id: str) -> str:
    return "c:{" + customer_id + "}"


def profile(customer_id: str) -> str:
    return _c(customer_id) + ":profile"


def cart(customer_id: str) -> str:
    return _c(customer_id) + ":cart"


def last(customer_id: str) -> str:
    """Hash: event type -> newest event of that type (JSON with `ts`)."""
    return _c(customer_id) + ":last"


def recent(customer_id: str) -> str:
    """List of interactions, newest first, trimmed to a bound."""
    return _c(customer_id) + ":recent"


def responses(customer_id: str) -> str:
    return _c(customer_id) + ":responses"


def event_seen(customer_id: str, event_id: str) -> str:
    return _c(customer_id) + ":ev:" + event_id


def day_of(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%d")


def week_of(now_ms: int) -> str:
    year, week, _ = datetime.fromtimestamp(now_ms / 1000, UTC).isocalendar()
    return f"{year}W{week:02d}"


def caps_day(customer_id: str, now_ms: int) -> str:
    return _c(customer_id) + ":caps:d:" + day_of(now_ms)


def caps_week(customer_id: str, now_ms: int) -> str:
    return _c(customer_id) + ":caps:w:" + week_of(now_ms)


def decision(decision_id: str) -> str:
    return "d:" + decision_id


def feedback_seen(feedback_id: str) -> str:
    return "fb:" + feedback_id


def treatment_stats(treatment_id: str) -> str:
    return "stats:t:" + treatment_id


def treatment_cap_field(treatment_id: str) -> str:
    return "t:" + treatment_id


def group_cap_field(group: str) -> str:
    return "g:" + group
