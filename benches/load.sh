#!/usr/bin/env bash
# Throughput of `$everything` from the NDJSON demo sources, with a real load generator (wrk)
# on 127.0.0.1. Bounded: a fixed duration (LOAD_SECONDS, default 20) and connection count.
#
#   bash benches/load.sh                 # needs wrk (apt-get install wrk) and curl
#
# Prints requests/s, latency percentiles and the gateway's peak resident memory (VmHWM).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common/demo.sh
. benches/common/demo.sh
export PATH="$HOME/.cargo/bin:$PATH"
SECONDS_TO_RUN="${LOAD_SECONDS:-20}"
CONNECTIONS="${LOAD_CONNECTIONS:-32}"
PORT="${LOAD_PORT:-18080}"
PEOPLE="${LOAD_PEOPLE:-50}"

command -v wrk >/dev/null || { echo "load.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet

start_demo_gateway "$PORT"

# Resolve the first $PEOPLE people of the GP export to gateway ids (not timed).
demo_nhs "$PEOPLE" > "$work/nhs.txt"
resolve "$PORT" "$work/nhs.txt" > "$work/paths.txt"
echo "load: $(wc -l < "$work/paths.txt") people, ${SECONDS_TO_RUN}s, $CONNECTIONS connections, 1 wrk thread, gateway pid $pid"

rotate_lua "$work/paths.txt" "$work/rotate.lua"
wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_TO_RUN}s" --latency -s "$work/rotate.lua" "http://127.0.0.1:$PORT" | tee "$work/wrk.txt"
echo "gateway peak memory: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
echo "non-2xx: $(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$work/wrk.txt" || echo none)"
