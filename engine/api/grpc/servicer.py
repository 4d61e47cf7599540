"""The gRPC servicers: convert, call the decision service, convert back. No decision logic here.

Every method goes through `_rpc`, which sheds load beyond the concurrency limit, counts every
failure by operation and error code (the same figures HTTP's error handlers keep), and sends it
through the one error mapping (`errors.abort_for`).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from grpc import aio

from engine.api.grpc import codec
from engine.api.grpc.errors import DeadlineExceeded, abort_for
from engine.api.grpc.gen import bench_pb2, bench_pb2_grpc, decision_pb2, decision_pb2_grpc
from engine.api.limits import ConcurrencyLimit
from engine.decision.service import DecisionService
from engine.domain import Event
from engine.errors import EngineError, InvalidInput
from engine.state.redis_store import RedisStore

STREAM_BATCH = 500
MIN_DECIDE_BUDGET_S = 0.005
"""Below this much time left a decision cannot come back in time (one Redis round trip, the
rules, the write-back), so the call is refused at once instead of spending the work."""

_Servicer = TypeVar("_Servicer", bound="_Guarded")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


class _Guarded:
    limit: ConcurrencyLimit

    def count_error(self, method: str, exc: Exception) -> None:
        """Count an error the call ends with (see DecisionServicer); nothing by default."""


def _rpc(
    method: Callable[[_Servicer, _Request, aio.ServicerContext], Awaitable[_Response]],
) -> Callable[[_Servicer, _Request, aio.ServicerContext], Awaitable[_Response]]:
    @functools.wraps(method)
    async def handler(self: _Servicer, request: _Request, context: aio.ServicerContext) -> _Response:
        try:
            with self.limit:
                return await method(self, request, context)
        except Exception as exc:
            self.count_error(method.__name__, exc)
            await abort_for(context, exc, method.__name__)

    return handler


_BATCH_FIELD = re.compile(r"^events\[(\d+)\]\.(.+)$")


def _in_stream(exc: InvalidInput, offset: int) -> InvalidInput:
    """Rename the field of an error in one batch of a stream after its place in the whole stream.

    The core names fields within the batch it was given (`events[3].x`, or just `x` for a batch
    of one); the client knows only the order in which it sent events.
    """
    field = exc.field
    if field is None or field == "events":
        return exc
    m = _BATCH_FIELD.match(field)
    renamed = f"events[{offset + int(m[1])}].{m[2]}" if m else f"events[{offset}].{field}"
    return InvalidInput(exc.message, field=renamed)


OPERATIONS = {
    "Decide": "decide",
    "RecordEvents": "events",
    "StreamEvents": "events",
    "RecordFeedback": "feedback",
    "GetCustomer": "customer",
}
"""The API operation of each method, for counting errors as HTTP counts them (engine.decision.service.API_OPERATIONS)."""


class DecisionServicer(decision_pb2_grpc.DecisionServiceServicer, _Guarded):
    def __init__(self, service: DecisionService, limit: ConcurrencyLimit, *, stream_batch: int = STREAM_BATCH) -> None:
        self.service = service
        self.limit = limit
        # A stream's batches must also pass the core's own batch limit.
        self.stream_batch = max(1, min(stream_batch, service.max_batch_events))

    def count_error(self, method: str, exc: Exception) -> None:
        if not isinstance(exc, aio.AbortError):  # a status chosen by the handler itself is not an error of ours
            self.service.count_error(OPERATIONS[method], exc.code if isinstance(exc, EngineError) else "internal")

    @_rpc
    async def Decide(self, request: decision_pb2.DecideRequest, context: aio.ServicerContext) -> decision_pb2.DecideResponse:  # noqa: N802 (the proto names it)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= MIN_DECIDE_BUDGET_S:
            raise DeadlineExceeded(f"the call's deadline leaves {remaining * 1000:.1f} ms; too little to decide")
        # Past the deadline, grpc.aio cancels this handler's task itself (the call is cancelled
        # in the core, which cancels the task), so the decision is abandoned where it stands
        # without a timer of our own per call; test_a_decision_that_outruns_the_deadline_is_abandoned
        # holds the library to that.
        decision = await self.service.decide(codec.decision_request(request))
        return codec.decide_response(decision)

    # Writes are shielded from cancellation (the client going away, or its deadline passing):
    # abandoned half-way, an ingest would keep its event ids claimed without applying the events,
    # and the client's retry would then be taken for a duplicate.

    @_rpc
    async def RecordEvents(  # noqa: N802 (the proto names it)
        self, request: decision_pb2.RecordEventsRequest, context: aio.ServicerContext
    ) -> decision_pb2.IngestResponse:
        result = await asyncio.shield(self.service.record_events(codec.events(request.events)))
        return codec.ingest_response(result)

    @_rpc
    async def StreamEvents(  # noqa: N802 (the proto names it)
        self, request_iterator: AsyncIterator[decision_pb2.Event], context: aio.ServicerContext
    ) -> decision_pb2.IngestResponse:
        """Apply events in batches as they arrive: whatever has arrived while the previous batch
        was being written (up to `stream_batch`) goes in the next one, so a busy stream gets big
        batches (few round trips) and a slow one gets its events applied without waiting for more."""
        end = object()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.stream_batch)  # full: stop reading, the client is flow-controlled

        async def read() -> None:
            try:
                async for message in request_iterator:
                    await queue.put(message)
            except Exception:
                await queue.put(end)  # wakes the batcher; the error itself surfaces when it awaits the reader
                raise
            await queue.put(end)

        reader = asyncio.create_task(read())
        accepted = duplicates = offset = 0
        try:
            done = False
            while not done:
                batch: list[Event] = []
                item = await queue.get()
                while item is not end:
                    batch.append(codec.event(item, f"events[{offset + len(batch)}]."))
                    if len(batch) >= self.stream_batch or queue.empty():
                        break
                    item = queue.get_nowait()
                done = item is end
                if batch:
                    try:
                        result = await asyncio.shield(self.service.record_events(batch))
                    except InvalidInput as exc:
                        raise _in_stream(exc, offset) from exc
                    accepted += result.accepted
                    duplicates += result.duplicates
                    offset += len(batch)
            await reader  # a failed read surfaces here
        finally:
            if not reader.done():
                reader.cancel()
            elif not reader.cancelled():
                reader.exception()  # seen: either re-raised above or superseded by the batch's own error
        if offset == 0:
            raise InvalidInput("no events given", field="events")
        return decision_pb2.IngestResponse(accepted=accepted, duplicates=duplicates)

    @_rpc
    async def RecordFeedback(  # noqa: N802 (the proto names it)
        self, request: decision_pb2.RecordFeedbackRequest, context: aio.ServicerContext
    ) -> decision_pb2.RecordFeedbackResponse:
        result = await asyncio.shield(self.service.record_feedback(codec.feedback(request)))
        return codec.feedback_response(result)

    @_rpc
    async def GetCustomer(  # noqa: N802 (the proto names it)
        self, request: decision_pb2.GetCustomerRequest, context: aio.ServicerContext
    ) -> decision_pb2.GetCustomerResponse:
        return codec.customer_response(await self.service.customer_view(request.customer_id))


class BenchServicer(bench_pb2_grpc.BenchServicer, _Guarded):
    """The benchmark's baselines: one Redis read behind the same server, limit and error mapping,
    over the hot-path connection or through redis-py."""

    def __init__(self, store: RedisStore, limit: ConcurrencyLimit) -> None:
        self.store = store
        self.limit = limit

    @_rpc
    async def Bare(self, request: bench_pb2.BareRequest, context: aio.ServicerContext) -> bench_pb2.BareResponse:  # noqa: N802 (the proto names it)
        return bench_pb2.BareResponse(profile_json=await self.store.bare_read(request.customer_id))

    @_rpc
    async def BareRedisPy(self, request: bench_pb2.BareRequest, context: aio.ServicerContext) -> bench_pb2.BareResponse:  # noqa: N802 (the proto names it)
        return bench_pb2.BareResponse(profile_json=await self.store.bare_read_redis_py(request.customer_id))
