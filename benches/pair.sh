#!/usr/bin/env bash
# Two builds of the gateway in paired runs: this checkout's and another's, on the same demo
# (this checkout's `concord.toml`, data, agreements and profiles), each run a new gateway,
# alternating other, this, other, this... so that a machine that speeds up or slows down
# during the runs moves both alike. Made for a change too small for compare.sh's rounds to
# show: CPU per answer moves far less between runs than requests/s do.
#
#   bash benches/pair.sh ../before      # the other checkout, its release build made already
#
# Each run: the release binary of one tree serves the demo on a fresh store, the first
# PAIR_PEOPLE (50) demo people are resolved, wrk warms it for 2 s, then wrk (1 thread, 32
# connections, PAIR_SECONDS, default 10) rotates over their `$everything`. Prints each run's
# requests/s, p50, p99 and CPU per answer (user + system of every thread of the gateway,
# from /proc/<pid>/stat over the timed run), then per build the medians of PAIR_RUNS (5)
# runs. A run with any non-2xx answer fails the script. Bounded: about 2 x PAIR_RUNS x
# (PAIR_SECONDS + 6) seconds after the build; one port (PAIR_PORT, 18190) on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common/demo.sh
. benches/common/demo.sh
export PATH="$HOME/.cargo/bin:$PATH"
OTHER="${1:?usage: bash benches/pair.sh OTHER_CHECKOUT}"
RUNS="${PAIR_RUNS:-5}"
SECONDS_TO_RUN="${PAIR_SECONDS:-10}"
PORT="${PAIR_PORT:-18190}"
PEOPLE="${PAIR_PEOPLE:-50}"
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "pair.sh: $tool is not installed" >&2; exit 1; }
done
other_bin="$(cd "$OTHER" && pwd)/target/release/concord"
[ -x "$other_bin" ] || { echo "pair.sh: $other_bin is missing (cargo build --release there)" >&2; exit 1; }
cargo build --release --quiet
this_bin="$PWD/target/release/concord"

work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
demo_nhs "$PEOPLE" > "$work/nhs.txt"

# One run of a binary: writes `requests/s p50_ms p99_ms cpu_us_per_answer` to $work/line.
run() { # binary
    local dir="$work/run" before rps p50 p99 total
    rm -rf "$dir"
    gateway_config "$dir" "$PORT"
    "$1" serve --config "$dir/concord.toml" >/dev/null 2>&1 &
    pid=$!
    token=$("$1" dev-token --config "$dir/concord.toml" --ttl 7200 2>/dev/null)
    wait_ready "$PORT"
    resolve "$PORT" "$work/nhs.txt" > "$dir/paths.txt"
    rotate_lua "$dir/paths.txt" "$dir/rotate.lua"
    wrk -t1 -c32 -d2s -s "$dir/rotate.lua" "http://127.0.0.1:$PORT" > /dev/null
    before=$(cpu_ticks "$pid")
    wrk -t1 -c32 -d"${SECONDS_TO_RUN}s" --latency -s "$dir/rotate.lua" "http://127.0.0.1:$PORT" > "$dir/wrk.txt"
    local ticks=$(( $(cpu_ticks "$pid") - before ))
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    if grep -q 'Non-2xx' "$dir/wrk.txt"; then
        echo "pair.sh: $1 answered something other than 2xx:" >&2
        cat "$dir/wrk.txt" >&2
        exit 1
    fi
    read -r rps p50 p99 total < <(wrk_figures "$dir/wrk.txt")
    echo "$rps $p50 $p99 $(per_answer_us "$ticks" "$total")" > "$work/line"
}

echo "pair: $OTHER (other) against $PWD (this), $RUNS pairs of ${SECONDS_TO_RUN}s, wrk 1 thread 32 connections, $(nproc) cores"
: > "$work/runs.txt"
for i in $(seq 1 "$RUNS"); do
    for side in other this; do
        if [ "$side" = other ]; then bin=$other_bin; else bin=$this_bin; fi
        run "$bin"
        line=$(cat "$work/line")
        echo "$side $line" >> "$work/runs.txt"
        read -r rate p50 p99 cpu <<< "$line"
        printf '  pair %d  %-5s  %8s req/s   p50 %6s ms   p99 %6s ms   CPU %4s µs/answer\n' "$i" "$side" "$rate" "$p50" "$p99" "$cpu"
    done
done
python3 - "$work/runs.txt" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print()
print("  median         req/s    p50 ms    p99 ms    CPU µs/answer")
for side in ("other", "this"):
    mine = [list(map(float, r[1:])) for r in rows if r[0] == side]
    med = [statistics.median(c) for c in zip(*mine)]
    print(f"  {side:<9} {med[0]:>10.0f} {med[1]:>9.2f} {med[2]:>9.2f} {med[3]:>12.0f}")
PY
