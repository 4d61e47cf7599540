"""The `nba` command run as operators run it: a real process, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType


def wait_for(predicate: Callable[[], object], timeout_s: float = 15.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s")


class NbaProcess:
    """`python -m engine.cli <args>` with extra environment; `stop()` sends SIGTERM and returns
    the exit code; `wait_output()` waits for a line it prints; after the block, `output` holds
    everything it printed."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.args = [sys.executable, "-m", "engine.cli", *args]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}  # lines as they are printed
        self.output = ""
        self._lines: list[str] = []

    def __enter__(self) -> NbaProcess:
        self.process = subprocess.Popen(self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line.decode(errors="replace"))

    def wait_output(self, text: str, timeout_s: float = 30.0) -> None:
        wait_for(lambda: any(text in line for line in list(self._lines)), timeout_s)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.output = "".join(self._lines)
