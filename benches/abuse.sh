#!/usr/bin/env bash
# A normal caller's `$everything` latency with and without an attack of idle connections and a
# slowloris, against the demo gateway (release build, default [server] limits) run under the
# common open-file limit of 1,024; then how long SIGTERM takes to end it while the attack goes on.
#
#   bash benches/abuse.sh        # needs wrk (apt-get install wrk), curl and python3
#
# ABUSE_BIN and ABUSE_CONFIG run another build with its own config instead (to compare with an
# earlier commit: its target/release/concord and its concord.toml).
#
# Bounded: ABUSE_SECONDS per measurement (default 15), ABUSE_IDLE idle connections (1000) and
# ABUSE_SLOW slowloris connections (400), only on loopback. The caller (wrk, 4 connections)
# connects from 127.0.0.1; the attackers from 127.0.0.10 and up, 50 connections per address,
# each reconnecting a second after the gateway closes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SECONDS_TO_RUN="${ABUSE_SECONDS:-15}"
IDLE="${ABUSE_IDLE:-1000}"
SLOW="${ABUSE_SLOW:-400}"
PORT="${ABUSE_PORT:-18081}"
PER_ADDRESS=50

command -v wrk >/dev/null || { echo "abuse.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
BIN="${ABUSE_BIN:-./target/release/concord}"
CONFIG="${ABUSE_CONFIG:-concord.toml}"
[[ -n "${ABUSE_BIN:-}" ]] || cargo build --release --quiet

work=$(mktemp -d)
pid="" attack=""
trap 'kill "$attack" 2>/dev/null || true; kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
sed -e "s|^listen = .*|listen = \"127.0.0.1:$PORT\"|" \
    -e "s|^url = \"sqlite://data/concord.db\"|url = \"sqlite://$work/concord.db\"|" \
    -e "s|^level = .*|level = \"warn\"|" \
    -e "s|\"examples/|\"$PWD/examples/|" \
    -e "s|^dir = \"policies\"|dir = \"$PWD/policies\"|" \
    -e "s|^dir = \"fhir-profiles\"|dir = \"$PWD/fhir-profiles\"|" "$CONFIG" > "$work/concord.toml"
# The gateway gets the open-file limit most machines give a service.
(ulimit -n 1024; exec "$BIN" serve --config "$work/concord.toml") &
pid=$!
base="http://127.0.0.1:$PORT/fhir"
token=$("$BIN" dev-token --config "$work/concord.toml" --ttl 7200 2>/dev/null)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

nhs=$(grep -o '"system":"https://fhir.nhs.uk/Id/nhs-number","value":"[0-9]*"' examples/demo/gp/Patient.ndjson \
    | grep -o '[0-9]\{10\}' | head -n 1)
id=$(curl -sf -H "Authorization: Bearer $token" "$base/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|$nhs" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
cat > "$work/everything.lua" <<LUA
request = function()
  return wrk.format("GET", "/fhir/Patient/$id/\$everything", {["Accept"] = "application/fhir+json", ["Authorization"] = "Bearer $token"})
end
LUA
measure() { # label -> prints wrk's output, leaves the median (ms) in $work/$1.median
    wrk -t1 -c4 -d"${SECONDS_TO_RUN}s" --latency -s "$work/everything.lua" "http://127.0.0.1:$PORT" > "$work/$1.txt"
    python3 - "$work/$1.txt" > "$work/$1.median" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
value, unit = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
print(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit])
PY
    grep -E "Requests/sec|Non-2xx|Socket errors|50%|99%" "$work/$1.txt" | sed "s/^/  $1: /"
}
metric() { curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E "^concord_connections" | sed 's/^/  /' || true; }

echo "abuse: gateway pid $pid (open-file limit $(grep 'Max open files' /proc/$pid/limits | awk '{print $4}')), \$everything of one person, wrk 4 connections, ${SECONDS_TO_RUN}s per run"
wrk -t1 -c4 -d3s -s "$work/everything.lua" "http://127.0.0.1:$PORT" > /dev/null   # warm up
measure unloaded

cat > "$work/attack.py" <<'PY'
# Idle connections and a slowloris from 127.0.0.10 and up; each reconnects a second after it
# is closed, until the time is up. Prints how many connections it opened and saw closed.
import asyncio, os, signal, sys
port, idle, slow, per_address, seconds = (int(a) for a in sys.argv[1:6])
opened = closed = failed = 0

def report(*_):
    print(f"  attack: {opened} connections opened, {closed} closed by the gateway, {failed} connects failed", flush=True)
    os._exit(0)

signal.signal(signal.SIGTERM, report)

async def one(n, slowloris, stop):
    global opened, closed, failed
    host = f"127.0.0.{10 + n // per_address}"
    while asyncio.get_running_loop().time() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
        except OSError:
            failed += 1
            await asyncio.sleep(1)
            continue
        opened += 1
        try:
            if slowloris:
                writer.write(b"GET /fhir/metadata HTTP/1.1\r\nHost: concord\r\n")
                while not reader.at_eof():
                    try:
                        if await asyncio.wait_for(reader.read(1024), 2) == b"":
                            break
                    except asyncio.TimeoutError:
                        writer.write(b"X-Slow: a\r\n")
                        await writer.drain()
            else:
                while await reader.read(1024):
                    pass
        except (OSError, asyncio.TimeoutError):
            pass
        closed += 1
        writer.close()
        await asyncio.sleep(1)

async def main():
    stop = asyncio.get_running_loop().time() + seconds
    tasks = [one(n, n >= idle, stop) for n in range(idle + slow)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + 5)
    except asyncio.TimeoutError:
        pass
    report()

asyncio.run(main())
PY
ulimit -n 8192   # the attacker side only
attack_seconds=$((SECONDS_TO_RUN * 2 + 20))
python3 "$work/attack.py" "$PORT" "$IDLE" "$SLOW" "$PER_ADDRESS" "$attack_seconds" > "$work/attack.txt" &
attack=$!
sleep 8   # let the attack reach full strength
echo "under attack: $IDLE idle + $SLOW slowloris connections from $(( (IDLE + SLOW + PER_ADDRESS - 1) / PER_ADDRESS )) addresses"
echo "  gateway open files: $(ls /proc/$pid/fd | wc -l)"
measure loaded
echo "  gateway open files: $(ls /proc/$pid/fd | wc -l)"
metric
kill -HUP "$pid"; sleep 1
echo "  policy reload under attack: $(curl -sf "http://127.0.0.1:$PORT/readyz" | python3 -c 'import json,sys; r=json.load(sys.stdin)["policy"]; print("error: " + r["reload_error"] if r.get("reload_error") else "ok")')"

unloaded=$(cat "$work/unloaded.median") loaded=$(cat "$work/loaded.median")
python3 -c "u, l = $unloaded, $loaded; print(f'median \$everything: unloaded {u:.2f} ms, under attack {l:.2f} ms, ratio {l / u:.2f} (target: at most 2)')"

# SIGTERM while the attack goes on (and a slowloris holds half-sent heads).
deadline_ms=$(grep -E '^shutdown_deadline_ms' "$work/concord.toml" | grep -o '[0-9]*' || echo 10000)
start=$(date +%s%N)
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do
    if (( ($(date +%s%N) - start) / 1000000 > deadline_ms + 5000 )); then echo "SIGTERM: still running after $((deadline_ms + 5000)) ms" >&2; exit 1; fi
    sleep 0.02
done
took=$(( ($(date +%s%N) - start) / 1000000 ))
wait "$pid" 2>/dev/null && status=0 || status=$?
pid=""
echo "SIGTERM: the gateway ended in ${took} ms (deadline ${deadline_ms} ms), exit status $status"
kill "$attack" 2>/dev/null || true
wait "$attack" 2>/dev/null || true
cat "$work/attack.txt"
(( took <= deadline_ms )) || { echo "abuse.sh: SIGTERM took longer than the deadline" >&2; exit 1; }
