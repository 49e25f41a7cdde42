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
export PATH="$HOME/.cargo/bin:$PATH"
SAMPLE="${PROFILE_SECONDS:-6}"
PORT="${PROFILE_PORT:-18180}"
OUT="${PROFILE_OUT:-target/profile}"
for tool in perf wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "profile.sh: $tool is not installed" >&2; exit 1; }
done
cargo build --release --quiet
mkdir -p "$OUT"

work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
sed -e "s|^listen = .*|listen = \"127.0.0.1:$PORT\"|" \
    -e "s|^url = \"sqlite://data/concord.db\"|url = \"sqlite://$work/concord.db\"|" \
    -e "s|^level = .*|level = \"warn\"|" \
    -e "s|^spool_dir = \"data/|spool_dir = \"$work/|" \
    -e "s|^witness_file = \"data/|witness_file = \"$work/|" \
    -e "s|\"examples/|\"$PWD/examples/|" \
    -e "s|^dir = \"policies\"|dir = \"$PWD/policies\"|" \
    -e "s|^dir = \"fhir-profiles\"|dir = \"$PWD/fhir-profiles\"|" concord.toml > "$work/concord.toml"
./target/release/concord serve --config "$work/concord.toml" 2>/dev/null &
pid=$!
base="http://127.0.0.1:$PORT/fhir"
token=$(./target/release/concord dev-token --config "$work/concord.toml" --ttl 7200 2>/dev/null)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

grep -o '"system":"https://fhir.nhs.uk/Id/nhs-number","value":"[0-9]*"' examples/demo/gp/Patient.ndjson \
    | grep -o '[0-9]\{10\}' | head -n 50 > "$work/nhs.txt"
: > "$work/paths.txt"
while read -r nhs; do
    id=$(curl -sf -H "Authorization: Bearer $token" "$base/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|$nhs" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
    echo "/fhir/Patient/$id/\$everything" >> "$work/paths.txt"
done < "$work/nhs.txt"
cat > "$work/rotate.lua" <<LUA
local paths = {}
for line in io.lines("$work/paths.txt") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], {["Authorization"] = "Bearer $token"})
end
LUA
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
