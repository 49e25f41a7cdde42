#!/usr/bin/env bash
# Where the demo gateway's CPU goes while it answers `$everything`: perf samples it with
# DWARF call graphs (the release build keeps line tables) while wrk drives it as load.sh
# does, then prints the Concord functions with the largest share of samples (each with what
# it calls) and the hottest leaf functions.
#
#   bash benches/profile.sh       # needs perf (apt-get install linux-perf), wrk, curl, python3
#
# PROFILE_SECONDS (default 6) of sampling at 499 Hz inside a wrk run of PROFILE_SECONDS + 4
# (1 thread, 32 connections, the first 50 demo people in rotation). perf.data is kept in
# PROFILE_OUT (default target/profile) for `perf report -i target/profile/perf.data`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common/demo.sh
. benches/common/demo.sh
export PATH="$HOME/.cargo/bin:$PATH"
SAMPLE="${PROFILE_SECONDS:-6}"
PORT="${PROFILE_PORT:-18180}"
OUT="${PROFILE_OUT:-target/profile}"
for tool in perf wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "profile.sh: $tool is not installed" >&2; exit 1; }
done
cargo build --release --quiet
mkdir -p "$OUT"

start_demo_gateway "$PORT" quiet
demo_nhs 50 > "$work/nhs.txt"
resolve "$PORT" "$work/nhs.txt" > "$work/paths.txt"
rotate_lua "$work/paths.txt" "$work/rotate.lua"
wrk -t1 -c32 -d2s -s "$work/rotate.lua" "http://127.0.0.1:$PORT" > /dev/null
wrk -t1 -c32 -d"$((SAMPLE + 4))s" --latency -s "$work/rotate.lua" "http://127.0.0.1:$PORT" > "$work/wrk.txt" &
wrk_pid=$!
sleep 2
perf record -q -F 499 -g --call-graph dwarf,16384 -p "$pid" -o "$OUT/perf.data" -- sleep "$SAMPLE" >/dev/null 2>&1
wait "$wrk_pid"
grep -E "Requests/sec|50%|99%" "$work/wrk.txt"

echo
echo "Concord functions by share of the gateway's samples (inclusive: with what they call)"
perf report -i "$OUT/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
    | grep -E '\] (<?concord::|sqlite3_step|sqlx_sqlite::connection::handle::ConnectionHandle::exec)' \
    | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' | cut -c1-140 | awk '!seen[$NF]++' | head -30 || true
echo
echo "Hottest leaf functions (self time)"
perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' | cut -c1-140 | head -15 || true
