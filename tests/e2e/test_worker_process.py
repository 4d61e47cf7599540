"""`nba worker` fires trigger timers as a process of its own."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from redis import Redis

from engine.state import keys
from tests.conftest import EXAMPLE_RULES
from tests.e2e.conftest import Channel
from tests.processes import NbaProcess, wait_for


def test_nba_worker_fires_due_timers_and_stops_cleanly(channel: Channel, redis_url: str, redis_sync: Redis) -> None:
    hour_ago = int(time.time() * 1000) - 3_600_000  # the worker runs on the real clock
    body = {"event_id": "w1", "customer_id": "ben", "type": "cart_add", "ts": hour_ago, "attributes": {"sku": "A", "price": 5}}
    assert channel.http.post("/v1/events", json=body).status_code == 202
    env = {"NBA_REDIS_URL": redis_url, "NBA_RULES_DIR": str(EXAMPLE_RULES)}
    with NbaProcess("worker", env=env) as worker:
        wait_for(lambda: redis_sync.hget(keys.flags("ben"), "cart_abandoned") is not None, timeout_s=60)
        assert worker.stop() == 0
    assert "timer worker" in worker.output
    assert int(redis_sync.hget(keys.flags("ben"), "cart_abandoned")) == hour_ago + 30 * 60_000 + 3 * 86_400_000


def test_nba_worker_follows_rule_changes_and_fires_timers_by_the_new_rules(
    channel: Channel, redis_url: str, redis_sync: Redis, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(EXAMPLE_RULES, rules, ignore=shutil.ignore_patterns("*_test.yaml"))
    env = {"NBA_REDIS_URL": redis_url, "NBA_RULES_DIR": str(rules), "NBA_RULES_WATCH_DEBOUNCE_MS": "100"}
    with NbaProcess("worker", env=env) as worker:
        worker.wait_output("timer worker", timeout_s=60)
        triggers = rules / "triggers.yaml"
        before = triggers.read_text()
        flag = "set_flag: {name: cart_abandoned, expires_after: {days: %d}}"
        after = before.replace(flag % 3, flag % 5)
        assert after != before
        triggers.write_text(after)
        worker.wait_output("rules reloaded", timeout_s=30)
        hour_ago = int(time.time() * 1000) - 3_600_000
        body = {"event_id": "w2", "customer_id": "cy", "type": "cart_add", "ts": hour_ago, "attributes": {"sku": "A", "price": 5}}
        assert channel.http.post("/v1/events", json=body).status_code == 202
        wait_for(lambda: redis_sync.hget(keys.flags("cy"), "cart_abandoned") is not None, timeout_s=60)
        assert worker.stop() == 0
    # The timer was scheduled by the serving app's rules; what it did when it fired is the worker's new rule.
    assert int(redis_sync.hget(keys.flags("cy"), "cart_abandoned")) == hour_ago + 30 * 60_000 + 5 * 86_400_000
