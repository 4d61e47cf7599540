"""Run the front ends: HTTP and gRPC together over one engine, or either alone.

Both share one engine (one Redis pool, one rule registry), so a decision over gRPC and one
over HTTP read the same state and the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator

import uvicorn
import uvloop

from engine.api.grpc.server import serve_grpc, start_grpc
from engine.api.http.app import create_app
from engine.api.process import settle_heap
from engine.bootstrap import open_engine
from engine.settings import Settings

GRACE_S = 10.0


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM once it has stopped, which would end the process before gRPC
    has drained; here a signal only asks the server to stop, and the process exits normally.
    `on_signal` hears of the signal at once, rather than once HTTP has finished shutting down."""

    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_signal = on_signal

    def _signalled(self, sig: int) -> None:
        if self.on_signal is not None:
            self.on_signal()
        self.handle_exit(sig, None)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signalled, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def _http_server(settings: Settings, app: object, log_level: str, on_signal: Callable[[], None] | None = None) -> uvicorn.Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=GRACE_S,
        proxy_headers=False,  # behind a proxy, set forwarded headers there; not worth a middleware per request here
        server_header=False,
    )
    return _Server(config, on_signal)


async def serve_both(settings: Settings, *, log_level: str, on_ready: Callable[[int], None]) -> None:
    """HTTP in the foreground; gRPC beside it. A signal stops both at once: gRPC says NOT_SERVING
    for its drain period while HTTP shuts down, rather than SERVING until HTTP is done."""
    async with open_engine(settings) as engine:
        running = await start_grpc(engine, settings.host, settings.grpc_port, max_concurrent_rpcs=settings.max_concurrent_rpcs)
        settle_heap(engine)
        on_ready(running.port)
        grpc_stop: list[asyncio.Task[None]] = []

        def stop_grpc(drain_s: float) -> None:
            if not grpc_stop:
                grpc_stop.append(asyncio.ensure_future(running.stop(GRACE_S, drain_s=drain_s)))

        app = create_app(settings, engine=engine)
        try:
            await _http_server(settings, app, log_level, on_signal=lambda: stop_grpc(settings.grpc_drain_s)).serve()
        finally:
            stop_grpc(0.0)  # HTTP ended without a signal (it failed to start, say): nothing to drain for
            await grpc_stop[0]


async def serve_http(settings: Settings, *, log_level: str) -> None:
    """HTTP alone; the engine is opened here rather than in the app's lifespan, so the heap can be
    settled once it is ready, before the first request."""
    async with open_engine(settings) as engine:
        settle_heap(engine)
        await _http_server(settings, create_app(settings, engine=engine), log_level).serve()


def run(settings: Settings, *, http: bool, grpc: bool, log_level: str, on_ready: Callable[[int], None]) -> None:
    """Block serving until SIGINT/SIGTERM. `on_ready` gets the bound gRPC port (0 picks one)."""
    if http and grpc:
        uvloop.run(serve_both(settings, log_level=log_level, on_ready=on_ready))
    elif grpc:
        uvloop.run(
            serve_grpc(
                settings, settings.host, settings.grpc_port, max_concurrent_rpcs=settings.max_concurrent_rpcs, on_ready=on_ready
            )
        )
    else:
        uvloop.run(serve_http(settings, log_level=log_level))
