#!/usr/bin/env bash
# Runs `loadgen abuse` against a fresh server process on free loopback ports, stops the server, and
# exits with loadgen's status (0 every check met its target, 1 one missed, 2 the run could not be
# made). The server keeps its default settings unless the environment sets some (make abuse-quick
# shortens HEADER_READ_TIMEOUT); its log is kept only when loadgen did not exit 0.
# Usage: scripts/abuse.sh SERVER_BINARY LOADGEN_BINARY [loadgen abuse flags...]
set -euo pipefail
server_binary=${1:?server binary}
loadgen_binary=${2:?loadgen binary}
shift 2

# Both ports at once, so that they differ.
read -r port metrics_port < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))')
log=$(mktemp -t abuse-server.XXXXXX.log)
HOST=127.0.0.1 PORT=$port METRICS_PORT=$metrics_port EMF_INTERVAL=0 LOG_LEVEL=${LOG_LEVEL:-warn} \
  DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-2s} "$server_binary" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  PORT=$port "$server_binary" healthcheck 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "abuse: the server exited at start:" >&2; cat "$log" >&2; exit 2; }
  sleep 0.1
done

status=0
"$loadgen_binary" abuse --url "ws://127.0.0.1:$port" --server-pid "$server" \
  --admin "127.0.0.1:$metrics_port" "$@" || status=$?

kill -TERM "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
if [[ $status -eq 0 ]]; then
  rm -f "$log"
else
  echo "abuse: the server's log is in $log" >&2
fi
exit "$status"
