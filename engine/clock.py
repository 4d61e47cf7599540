"""Injected time: the core never reads the wall clock itself, so tests can fix or move it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch (UTC)."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FixedClock:
    """A clock that moves only when told to; used by tests and rule test cases."""

    def __init__(self, now_ms: int) -> None:
        self._now = now_ms

    def now_ms(self) -> int:
        return self._now

    def set(self, now_ms: int) -> None:
        self._now = now_ms

    def advance(self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> None:
        self._now += int(((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000)


MS_PER_HOUR = 3_600_000
MS_PER_DAY = 24 * MS_PER_HOUR
