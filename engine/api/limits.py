"""Load shedding shared by the front ends: a cap on requests in flight, refused at once beyond it."""

from __future__ import annotations

from types import TracebackType

from engine.errors import Overloaded


class ConcurrencyLimit:
    """At most `limit` requests in flight; beyond that, Overloaded at once (HTTP 503 with
    Retry-After, gRPC RESOURCE_EXHAUSTED).

    Refusing fast lets a client retry elsewhere or back off, where queueing would make every
    request late. A plain counter suffices: each front end runs on one event loop. Health,
    readiness, metrics and reflection are not counted, so an overloaded server still answers
    its probes. Used as `with limit:`; a class rather than a generator-based context manager
    because it wraps every request.
    """

    __slots__ = ("in_flight", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.limit = limit
        self.in_flight = 0

    def __enter__(self) -> None:
        if self.in_flight >= self.limit:
            raise Overloaded(f"server is at its limit of {self.limit} concurrent calls; retry after a short backoff")
        self.in_flight += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.in_flight -= 1
