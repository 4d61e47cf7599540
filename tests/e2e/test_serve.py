"""`nba serve` as an operator runs it: a real process with HTTP and gRPC over one engine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx2
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.api.grpc.gen import decision_pb2 as pb
from engine.api.grpc.gen.decision_pb2_grpc import DecisionServiceStub
from tests.conftest import EXAMPLE_RULES
from tests.processes import NbaProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, server: NbaProcess, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.alive(), "the server exited early"
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready after {timeout_s} s")


def test_serve_runs_http_and_grpc_over_one_engine_and_stops_gracefully(redis_url: str, tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = {"NBA_REDIS_URL": redis_url, "NBA_RULES_DIR": str(EXAMPLE_RULES), "NBA_DATA_DIR": str(tmp_path)}
    args = ("serve", "--port", str(http_port), "--grpc-port", str(grpc_port), "--log-level", "warning")
    with NbaProcess(*args, env=env) as server:
        wait_ready(f"http://127.0.0.1:{http_port}/readyz", server)
        event = {"event_id": "serve-1", "customer_id": "srv-1", "type": "flight_delayed", "attributes": {"delay_minutes": 90}}
        assert httpx2.post(f"http://127.0.0.1:{http_port}/v1/events", json=event).status_code == 202
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            # The event sent over HTTP is seen by a decision over gRPC: one engine, one state.
            reply = DecisionServiceStub(channel).Decide(pb.DecideRequest(customer_id="srv-1", channel="mobile_app"), timeout=5)
            assert reply.treatments[0].id == "apology_upgrade"
        assert gauge(http_port, "nba_gc_frozen_objects") > 10_000
        assert gauge(http_port, "nba_gc_young_threshold") == 20_000
        assert server.stop() == 0
    assert f"gRPC listening on 127.0.0.1:{grpc_port}" in server.output


def gauge(http_port: int, name: str) -> float:
    """A gauge of the served process's /metrics; the gc ones say how it settled its heap (engine.api.process)."""
    text = httpx2.get(f"http://127.0.0.1:{http_port}/metrics").text
    lines = [line for line in text.splitlines() if line.startswith(name + " ")]
    assert len(lines) == 1, text
    return float(lines[0].split()[1])


def test_serve_http_only_opens_one_engine_settles_its_heap_and_leaves_grpc_closed(redis_url: str, tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = {"NBA_REDIS_URL": redis_url, "NBA_RULES_DIR": str(EXAMPLE_RULES), "NBA_DATA_DIR": str(tmp_path)}
    env["NBA_GC_YOUNG_THRESHOLD"] = "5000"
    args = ("serve", "--http-only", "--port", str(http_port), "--grpc-port", str(grpc_port), "--log-level", "warning")
    with NbaProcess(*args, env=env) as server:
        wait_ready(f"http://127.0.0.1:{http_port}/readyz", server)
        reply = httpx2.post(f"http://127.0.0.1:{http_port}/v1/decisions", json={"customer_id": "srv-2", "channel": "web"})
        assert reply.status_code == 200 and reply.json()["treatments"], reply.text
        assert gauge(http_port, "nba_gc_frozen_objects") > 10_000
        assert gauge(http_port, "nba_gc_young_threshold") == 5_000
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", grpc_port)) != 0, "gRPC should not listen with --http-only"
        assert server.stop() == 0
    assert "gRPC listening" not in server.output


def wait_serving(grpc_port: int, server: NbaProcess, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert server.alive(), "the server exited early"
            try:
                if (
                    health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise AssertionError(f"not SERVING after {timeout_s} s")


def test_serve_grpc_only_serves_decisions_and_leaves_http_closed(redis_url: str, tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = {
        "NBA_REDIS_URL": redis_url,
        "NBA_RULES_DIR": str(EXAMPLE_RULES),
        "NBA_DATA_DIR": str(tmp_path),
        "NBA_GRPC_DRAIN_S": "0.1",
    }
    args = ("serve", "--grpc-only", "--port", str(http_port), "--grpc-port", str(grpc_port), "--log-level", "warning")
    with NbaProcess(*args, env=env) as server:
        wait_serving(grpc_port, server)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            reply = DecisionServiceStub(channel).Decide(pb.DecideRequest(customer_id="srv-3", channel="web"), timeout=5)
            assert reply.treatments and reply.customer_id == "srv-3"
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", http_port)) != 0, "HTTP should not listen with --grpc-only"
        assert server.stop() == 0
    assert f"gRPC listening on 127.0.0.1:{grpc_port}" in server.output
    assert "HTTP listening" not in server.output


DRAIN_S = 2.0


@pytest.mark.parametrize("front_ends", [("--grpc-only",), ()], ids=["grpc-only", "http-and-grpc"])
def test_on_sigterm_grpc_health_says_not_serving_for_the_drain_period_before_calls_fail(
    redis_url: str, tmp_path: Path, front_ends: tuple[str, ...]
) -> None:
    """Load balancers poll health; they need NOT_SERVING for a while, with calls still answered,
    to move traffic away before the listener closes."""
    http_port, grpc_port = free_port(), free_port()
    env = {
        "NBA_REDIS_URL": redis_url,
        "NBA_RULES_DIR": str(EXAMPLE_RULES),
        "NBA_DATA_DIR": str(tmp_path),
        "NBA_GRPC_DRAIN_S": str(DRAIN_S),
    }
    args = ("serve", *front_ends, "--port", str(http_port), "--grpc-port", str(grpc_port), "--log-level", "warning")
    with NbaProcess(*args, env=env) as server, grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        wait_serving(grpc_port, server)
        health, stub = health_pb2_grpc.HealthStub(channel), DecisionServiceStub(channel)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        not_serving_since: float | None = None
        decided_while_draining = False
        failed_with: grpc.StatusCode | None = None
        sent = signalled
        while time.monotonic() - signalled < 30:
            sent = time.monotonic()
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
            except grpc.RpcError as exc:
                failed_with = exc.code()
                break
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                if not_serving_since is None:
                    not_serving_since = time.monotonic()
                if not decided_while_draining:
                    decided_while_draining = bool(
                        stub.Decide(pb.DecideRequest(customer_id="srv-4", channel="web"), timeout=5).treatments
                    )
            time.sleep(0.02)
        else:
            raise AssertionError("gRPC still answering 30 s after SIGTERM")
        unavailable_at = sent  # when the first failing call was sent, not when it gave up
        # A check sent just as the server closes races its GOAWAY: refused (UNAVAILABLE); cancelled
        # with the connection when its stream was already open (CANCELLED); or, rarely, left
        # unanswered as the server stops taking calls, so the client's deadline ends it
        # (DEADLINE_EXCEEDED). Each means the listener has closed, which the timing checks below
        # hold to the drain period; the call after it is refused.
        closing = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert failed_with in closing, failed_with
        assert not_serving_since is not None, "calls failed without health ever saying NOT_SERVING"
        assert not_serving_since - signalled < DRAIN_S / 2, "NOT_SERVING as soon as the signal arrives"
        assert unavailable_at - not_serving_since >= DRAIN_S / 2, "NOT_SERVING for the drain period before closing"
        assert decided_while_draining, "calls are still answered while draining"
        with pytest.raises(grpc.RpcError) as caught:
            stub.Decide(pb.DecideRequest(customer_id="srv-4", channel="web"), timeout=2)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.process.wait(timeout=30) == 0


def test_serve_refuses_a_broken_rule_set(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "treatments:\n  - id: a\n    kind: offer\n    channels: [web]\n    eligibility: customer.nope > 1\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "serve", "--rules", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NBA_DATA_DIR": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to start" in result.stderr and "bad.yaml:5:" in result.stderr and "customer.nope" in result.stderr
