#!/usr/bin/env bash
# Throughput of `$everything` from the NDJSON demo sources, with a real load generator (wrk)
# on 127.0.0.1. Bounded: a fixed duration (LOAD_SECONDS, default 20) and connection count.
#
#   bash benches/load.sh                 # needs wrk (apt-get install wrk) and curl
#
# Prints requests/s, latency percentiles and the gateway's peak resident memory (VmHWM).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SECONDS_TO_RUN="${LOAD_SECONDS:-20}"
CONNECTIONS="${LOAD_CONNECTIONS:-32}"
PORT="${LOAD_PORT:-18080}"
PEOPLE="${LOAD_PEOPLE:-50}"

command -v wrk >/dev/null || { echo "load.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
sed -e "s|^listen = .*|listen = \"127.0.0.1:$PORT\"|" \
    -e "s|^url = \"sqlite://data/concord.db\"|url = \"sqlite://$work/concord.db\"|" \
    -e "s|^level = .*|level = \"warn\"|" \
    -e "s|\"examples/|\"$PWD/examples/|" \
    -e "s|^dir = \"policies\"|dir = \"$PWD/policies\"|" \
    -e "s|^dir = \"fhir-profiles\"|dir = \"$PWD/fhir-profiles\"|" concord.toml > "$work/concord.toml"
./target/release/concord serve --config "$work/concord.toml" &
pid=$!
base="http://127.0.0.1:$PORT/fhir"
token=$(./target/release/concord dev-token --config "$work/concord.toml" --ttl 7200 2>/dev/null)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

# Resolve the first $PEOPLE people of the GP export to gateway ids (not timed).
grep -o '"system":"https://fhir.nhs.uk/Id/nhs-number","value":"[0-9]*"' examples/demo/gp/Patient.ndjson \
    | grep -o '[0-9]\{10\}' > "$work/all-nhs.txt"
head -n "$PEOPLE" "$work/all-nhs.txt" > "$work/nhs.txt"
: > "$work/paths.txt"
while read -r nhs; do
    id=$(curl -sf -H "Authorization: Bearer $token" "$base/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|$nhs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
    echo "/fhir/Patient/$id/\$everything" >> "$work/paths.txt"
done < "$work/nhs.txt"
echo "load: $(wc -l < "$work/paths.txt") people, ${SECONDS_TO_RUN}s, $CONNECTIONS connections, 1 wrk thread, gateway pid $pid"

cat > "$work/rotate.lua" <<LUA
local paths = {}
for line in io.lines("$work/paths.txt") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], {["Accept"] = "application/fhir+json", ["Authorization"] = "Bearer $token"})
end
LUA
wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_TO_RUN}s" --latency -s "$work/rotate.lua" "http://127.0.0.1:$PORT" | tee "$work/wrk.txt"
echo "gateway peak memory: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
echo "non-2xx: $(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$work/wrk.txt" || echo none)"
