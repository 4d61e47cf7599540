"""One shared, auto-pipelined Redis connection for the hot path.

Every decision makes two round trips (read the customer, write the decision back). Taking a
pooled connection per call means per call: a checkout and release, a socket write, a wake-up
and a socket read in this process, and the same system calls again inside Redis. Under load
that overhead costs more than the commands themselves.

Here commands are queued and go out together in one write; replies come back in the order
Redis received the commands (its protocol guarantees it) and are handed to their callers from
one read callback. A queue is written when the loop turn that started it ends, unless a batch
already written is still waiting for replies: then it goes out as soon as the last of those
comes back (Nagle's rule, applied to a pipeline). Waiting costs the commands little: Redis
runs one connection's commands in order, so they could not start before the batch ahead
anyway, and what they wait for beyond that is its replies reaching this process. It lets
batches grow with load, which matters most where requests arrive one per loop turn, as gRPC's
server hands them over: flushing per turn sent most decisions' reads and writes one at a time.
Nothing waits for a batch to fill: a command with nothing ahead of it goes out in the turn it
was issued, so the added latency is zero when idle. The same technique is what ioredis calls
auto-pipelining and StackExchange.Redis calls multiplexing.

A caller that gives up (its timeout fires) leaves its slot in the queue: its reply is read and
dropped when it comes, so the connection never falls out of step. A broken connection fails
every caller still waiting, and the next command connects again.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

MAX_IN_FLIGHT = 10_000
"""Commands queued or awaiting replies beyond which new ones fail at once: when Redis stalls,
callers fall back to degraded answers instead of piling up memory."""


def _reply_error(message: str) -> ResponseError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


def _expire(future: asyncio.Future[list[Any]]) -> None:
    if not future.done():
        future.set_exception(TimeoutError("no reply from Redis in time"))


class _Waiter:
    __slots__ = ("future", "remaining", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.remaining = count
        self.replies: list[Any] = []


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: Multiplexer, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        # The loop the connection lives on, kept rather than looked up per command: on Python
        # 3.11 each asyncio.get_running_loop() is a getpid() system call.
        self.loop = loop
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[_Waiter] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        # Commands packed this loop turn, written together at its end. Kept per connection so a
        # command queued for a new connection never goes out on, or is dropped with, an old one.
        self.buffer: list[bytes] = []
        self.flush_scheduled = False
        self.unanswered = 0  # commands written whose replies have not come back yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses, but alike

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiters = self.waiters
        while (reply := reader.gets()) is not False:
            if not waiters:  # a reply nobody asked for: the stream is out of step, start again
                self._fail(RedisConnectionError("unexpected reply from Redis"))
                return
            waiter = waiters[0]
            waiter.replies.append(_reply_error(str(reply)) if isinstance(reply, hiredis.ReplyError) else reply)
            waiter.remaining -= 1
            self.unanswered -= 1
            if waiter.remaining == 0:
                waiters.popleft()
                self.owner.in_flight -= len(waiter.replies)
                if not waiter.future.done():
                    waiter.future.set_result(waiter.replies)
        if self.unanswered == 0 and self.buffer:
            # Held behind the batch just answered; scheduled rather than written here, so
            # the callers woken by these replies add their next commands to it.
            self.schedule_flush()

    def schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        data, count, self.buffer = b"".join(self.buffer), len(self.buffer), []
        if self.transport is not None and self.lost is None:
            self.transport.write(data)
            self.unanswered += count
            self.owner.writes += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}"))

    def _fail(self, exc: BaseException) -> None:
        self.lost = exc
        if self.transport is not None:
            self.transport.abort()
        while self.waiters:
            waiter = self.waiters.popleft()
            self.owner.in_flight -= waiter.remaining + len(waiter.replies)
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        self.owner.forget(self)


class Multiplexer:
    """Runs commands for many concurrent callers over one connection; see the module docstring."""

    def __init__(
        self, pool: aioredis.ConnectionPool, *, connect_timeout_s: float = 1.0, max_in_flight: int = MAX_IN_FLIGHT
    ) -> None:
        # The pool only supplies where and how to connect (URL, password, database, TLS), so
        # the hot path and the rest of the store always talk to the same server.
        self.kwargs = dict(pool.connection_kwargs)
        self.tls = issubclass(pool.connection_class, aioredis.SSLConnection)
        self.connect_timeout_s = connect_timeout_s
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.writes = 0
        """Socket writes so far: what tests count to prove commands were batched."""
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def execute(self, *commands: Sequence[Any], within_s: float | None = None) -> list[Any]:
        """Replies to `commands`, in order; error replies are returned as exceptions, not raised,
        so a caller can tell which command failed.

        Past `within_s` seconds (connecting included) it raises TimeoutError. That is a timer on
        the reply's future rather than asyncio.timeout, which costs several times more per call
        and, twice per decision, showed in profiles.
        """
        if within_s is None:
            return await self._execute(commands)
        protocol = self._protocol
        loop = protocol.loop if protocol is not None else asyncio.get_running_loop()
        deadline = loop.time() + within_s
        if protocol is None:
            async with asyncio.timeout_at(deadline):
                await self._connect()
        future = self._submit(commands)
        handle = loop.call_at(deadline, _expire, future)
        try:
            return await future
        finally:
            handle.cancel()

    async def _execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        if self._protocol is None:
            await self._connect()
        return await self._submit(commands)

    def _submit(self, commands: Sequence[Sequence[Any]]) -> asyncio.Future[list[Any]]:
        """Queue `commands` on the live connection; the future gets their replies."""
        protocol = self._protocol
        if protocol is None:  # lost between connecting and now
            raise RedisConnectionError("connection to Redis lost")
        if self.in_flight + len(commands) > self.max_in_flight:
            raise RedisConnectionError(f"more than {self.max_in_flight} Redis commands in flight")
        future = self._expect(protocol, len(commands))
        protocol.buffer.extend(hiredis.pack_command(tuple(c)) for c in commands)
        if protocol.unanswered == 0:  # else it goes out when the batch ahead is answered
            protocol.schedule_flush()
        return future

    def _expect(self, protocol: _Protocol, count: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = protocol.loop.create_future()
        protocol.waiters.append(_Waiter(future, count))
        self.in_flight += count
        return future

    def forget(self, protocol: _Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    async def _connect(self) -> _Protocol:
        # Concurrent first callers share one connection attempt.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        kw = self.kwargs
        async with asyncio.timeout(self.connect_timeout_s):
            if kw.get("path"):
                _, protocol = await loop.create_unix_connection(lambda: _Protocol(self, loop), kw["path"])
            else:
                context = self._tls_context() if self.tls else None
                host, port = kw.get("host", "localhost"), int(kw.get("port", 6379))
                _, protocol = await loop.create_connection(lambda: _Protocol(self, loop), host, port, ssl=context)
            handshake: list[tuple[Any, ...]] = []
            if kw.get("password"):
                user = kw.get("username")
                handshake.append(("AUTH", user, kw["password"]) if user else ("AUTH", kw["password"]))
            if int(kw.get("db") or 0):
                handshake.append(("SELECT", int(kw["db"])))
            handshake.append(("CLIENT", "SETNAME", "nba-hot-path"))
            # Sent before the connection is shared, so no caller's command can run on a
            # connection whose AUTH or SELECT failed.
            future = self._expect(protocol, len(handshake))
            assert protocol.transport is not None
            protocol.transport.write(b"".join(hiredis.pack_command(c) for c in handshake))
            protocol.unanswered += len(handshake)
            try:
                replies = await future
            except BaseException:
                protocol.transport.abort()
                raise
            for reply in replies:
                if isinstance(reply, Exception):
                    protocol.transport.abort()
                    raise RedisConnectionError(f"Redis refused the connection set-up: {reply}")
        self._protocol = protocol
        return protocol

    def _tls_context(self) -> ssl.SSLContext:
        kw = self.kwargs
        context = ssl.create_default_context(cafile=kw.get("ssl_ca_certs"))
        if kw.get("ssl_certfile"):
            context.load_cert_chain(kw["ssl_certfile"], kw.get("ssl_keyfile"))
        if kw.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
