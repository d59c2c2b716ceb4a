#!/usr/bin/env bash
# Runs the Autobahn TestSuite cases of sections 1 to 10 (kosoku) against /echo of a real server
# process on a loopback port, and fails unless every case is OK, NON-STRICT or INFORMATIONAL.
# Sections 12 and 13 (permessage-deflate) are not run: the server does not negotiate compression.
# Usage: scripts/autobahn.sh SERVER_BINARY REPORT_DIR
set -euo pipefail
binary=${1:?server binary}
report=${2:?report directory}
command -v kosoku >/dev/null || { echo "autobahn: kosoku not found; run 'make tools'" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Section 9 sends messages of up to 16 MiB, as fast as the server echoes them, so the size limits
# are raised and the inbound rate limits turned off for this run only.
HOST=127.0.0.1 PORT=$port METRICS_PORT=0 EMF_INTERVAL=0 LOG_LEVEL=warn \
  MAX_MESSAGE_SIZE=$((20 << 20)) MAX_FRAME_SIZE=$((20 << 20)) CLIENT_QUEUE_BYTES=$((20 << 20)) \
  MAX_MESSAGES_PER_SECOND=0 MAX_BYTES_PER_SECOND=0 "$binary" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  PORT=$port "$binary" healthcheck 2>/dev/null && break
  sleep 0.1
done

rm -rf "$report"
sections=()
for section in 1 2 3 4 5 6 7 9 10; do sections+=(-i "$section.*"); done
kosoku -p 2 -o "$report" "ws://127.0.0.1:$port/echo" "${sections[@]}"

python3 - "$report/index.json" <<'PY'
import collections, json, sys
results = [case for agent in json.load(open(sys.argv[1])).values() for case in agent.values()]
verdicts = collections.Counter(case["behavior"] for case in results)
bad = {verdict: n for verdict, n in verdicts.items() if verdict not in ("OK", "NON-STRICT", "INFORMATIONAL")}
print(f"autobahn: {len(results)} cases: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())))
if len(results) < 300 or bad:
    sys.exit(f"autobahn: expected at least 300 cases, all OK/NON-STRICT/INFORMATIONAL; bad: {bad}")
PY
