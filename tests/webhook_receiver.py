"""A webhook receiver for tests: a real HTTP server on a free loopback port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

TRUNCATED = -1
"""A status for `Receiver.statuses`: an answer cut short (the sender sees IncompleteRead)."""


class Receiver:
    """An HTTP server that records what it is sent and answers with the statuses it is given."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.statuses: list[int] = []  # answers to give, in order; 200 once they run out; TRUNCATED cuts one short
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.received.append((orjson.loads(body), {k.lower(): v for k, v in self.headers.items()}))
                status = owner.statuses.pop(0) if owner.statuses else 200
                if status == TRUNCATED:  # promises a body it never sends, then hangs up
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b"short")
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        return [body["id"] for body, _ in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
