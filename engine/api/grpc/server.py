"""The gRPC server's lifecycle, over an engine that is already open.

The server does not build its own engine: `nba serve` opens one (one Redis pool, one rule
registry) and hands it to both HTTP and gRPC, so both answer from the same state and rules.

Health follows readiness: the standard health service says NOT_SERVING until the engine's
readiness check (rules loaded, Redis answering) passes, keeps following it while the server
runs, and says NOT_SERVING for good as soon as a graceful stop begins. It then keeps answering
for a drain period (NBA_GRPC_DRAIN_S) before it closes the listener: load balancers poll health,
and only a server still up when they next look can tell them to move traffic away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engine.api.grpc.gen import bench_pb2, bench_pb2_grpc, decision_pb2, decision_pb2_grpc
from engine.api.grpc.servicer import BenchServicer, DecisionServicer
from engine.api.limits import ConcurrencyLimit
from engine.api.process import settle_heap
from engine.bootstrap import Engine, open_engine
from engine.clock import Clock
from engine.settings import Settings

log = logging.getLogger("engine.grpc")

DECISION_SERVICE = decision_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name
BENCH_SERVICE = bench_pb2.DESCRIPTOR.services_by_name["Bench"].full_name
MAX_CONCURRENT_RPCS = 1_000
HEALTH_INTERVAL_S = 5.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class RunningGrpc:
    """A started server: its bound port, and the way to stop it."""

    server: aio.Server
    port: int
    health: health.aio.HealthServicer
    limit: ConcurrencyLimit
    _watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    async def drain(self) -> None:
        """Report NOT_SERVING from now on, while still answering calls (the first step of `stop`)."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float, *, drain_s: float = 0.0) -> None:
        """NOT_SERVING, still answering calls for `drain_s` seconds, then refuse new calls and give
        those in flight `grace` seconds to finish.

        Closing the listener right after NOT_SERVING would fail the calls load balancers send
        before their next health check; a serving process passes `settings.grpc_drain_s`.
        """
        await self.drain()
        if drain_s > 0:
            await asyncio.sleep(drain_s)
        await self.server.stop(grace)

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def _set_health(servicer: health.aio.HealthServicer, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
    for service in ("", DECISION_SERVICE):
        await servicer.set(service, status)


async def _is_ready(engine: Engine) -> bool:
    try:
        ok, _ = await engine.readiness()
    except Exception:
        log.exception("readiness check failed")
        return False
    return ok


async def _follow_readiness(engine: Engine, servicer: health.aio.HealthServicer, interval_s: float, ready: bool) -> None:
    while True:
        await asyncio.sleep(interval_s)
        now_ready = await _is_ready(engine)
        if now_ready != ready:
            log.warning("gRPC health: %s", "SERVING" if now_ready else "NOT_SERVING (engine not ready)")
            await _set_health(servicer, _SERVING if now_ready else _NOT_SERVING)
            ready = now_ready


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def start_grpc(
    engine: Engine,
    host: str,
    port: int,
    *,
    max_concurrent_rpcs: int = MAX_CONCURRENT_RPCS,
    health_interval_s: float = HEALTH_INTERVAL_S,
) -> RunningGrpc:
    """Serve the engine over gRPC on `host:port` (port 0: an ephemeral port, see `.port`).

    Returns once the server listens; health says SERVING once the engine is ready. Must be
    called on the event loop that owns the engine's Redis client.
    """
    settings = engine.settings
    server = aio.server(
        options=[
            # Without this a second server could bind the same port and silently share its calls.
            ("grpc.so_reuseport", 0),
            # One request size limit for both front ends.
            ("grpc.max_receive_message_length", settings.max_body_bytes),
        ]
    )
    limit = ConcurrencyLimit(max_concurrent_rpcs)
    decision_pb2_grpc.add_DecisionServiceServicer_to_server(DecisionServicer(engine.service, limit), server)
    names = [DECISION_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]
    if settings.bench_endpoints:
        bench_pb2_grpc.add_BenchServicer_to_server(BenchServicer(engine.store, limit), server)
        names.append(BENCH_SERVICE)

    health_servicer = health.aio.HealthServicer()
    await _set_health(health_servicer, _NOT_SERVING)  # it starts out SERVING for ""
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(names, server)

    try:
        bound = server.add_insecure_port(_address(host, port))
    except RuntimeError as exc:
        raise OSError(f"gRPC: cannot listen on {_address(host, port)}: {exc}") from exc
    if bound == 0:
        raise OSError(f"gRPC: cannot listen on {_address(host, port)}")
    await server.start()

    ready = await _is_ready(engine)
    if ready:
        await _set_health(health_servicer, _SERVING)
    else:
        log.warning("gRPC health: NOT_SERVING until the engine is ready")
    watcher = asyncio.create_task(_follow_readiness(engine, health_servicer, health_interval_s, ready), name="grpc-health")
    return RunningGrpc(server, bound, health_servicer, limit, watcher)


async def serve_grpc(
    settings: Settings,
    host: str | None = None,
    port: int = 50051,
    *,
    grace: float = 10.0,
    clock: Clock | None = None,
    max_concurrent_rpcs: int = MAX_CONCURRENT_RPCS,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Open the engine and serve gRPC alone until SIGINT or SIGTERM, then stop gracefully: NOT_SERVING
    for `settings.grpc_drain_s`, then `grace` for the calls in flight.

    `on_ready` gets the bound port once the server listens (to print it: port 0 is ephemeral).
    """
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        async with open_engine(settings, clock=clock) as engine:
            running = await start_grpc(engine, host or settings.host, port, max_concurrent_rpcs=max_concurrent_rpcs)
            settle_heap(engine)
            if on_ready is not None:
                on_ready(running.port)
            stopped = asyncio.create_task(running.wait())
            signalled = asyncio.create_task(stopping.wait())
            await asyncio.wait({stopped, signalled}, return_when=asyncio.FIRST_COMPLETED)
            signalled.cancel()
            await running.stop(grace, drain_s=settings.grpc_drain_s if stopping.is_set() else 0.0)
            await stopped
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
