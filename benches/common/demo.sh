# Shell helpers the load scripts share (load.sh, compare.sh, profile.sh): source it from the
# repository's root. `resolve` and `rotate_lua` read the bearer token from $token.

# The demo config with a port, a store, policies and profiles of our own, in its own
# directory: the audit spool and witness file are relative to the config file.
gateway_config() { # dir port
    mkdir -p "$1"
    sed -e "s|^listen = .*|listen = \"127.0.0.1:$2\"|" \
        -e "s|^url = \"sqlite://data/concord.db\"|url = \"sqlite://$1/concord.db\"|" \
        -e "s|^level = .*|level = \"warn\"|" \
        -e "s|\"examples/|\"$PWD/examples/|" \
        -e "s|^dir = \"policies\"|dir = \"$PWD/policies\"|" \
        -e "s|^dir = \"fhir-profiles\"|dir = \"$PWD/fhir-profiles\"|" concord.toml > "$1/concord.toml"
}

# The first N NHS numbers of the demo GP export, one a line.
demo_nhs() { # n
    grep -o '"system":"https://fhir.nhs.uk/Id/nhs-number","value":"[0-9]*"' examples/demo/gp/Patient.ndjson \
        | grep -o '[0-9]\{10\}' | head -n "$1"
}

# Waits until the gateway on a port is ready (at most 10 s).
wait_ready() { # port
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done
    echo "the gateway on port $1 did not become ready" >&2
    return 1
}

# Starts the release build's demo gateway on a port, in a new temporary directory ($work)
# that is removed, after the gateway has stopped, when the script exits; sets $pid and a
# demo bearer token in $token, and waits until the gateway is ready. `quiet` drops the
# gateway's own messages (the demo-key warning).
start_demo_gateway() { # port [quiet]
    work=$(mktemp -d)
    pid=""
    trap stop_demo_gateway EXIT
    gateway_config "$work" "$1"
    if [ "${2:-}" = quiet ]; then
        ./target/release/concord serve --config "$work/concord.toml" 2>/dev/null &
    else
        ./target/release/concord serve --config "$work/concord.toml" &
    fi
    pid=$!
    token=$(./target/release/concord dev-token --config "$work/concord.toml" --ttl 7200 2>/dev/null)
    wait_ready "$1"
}

# Stops the gateway start_demo_gateway started and removes its directory.
stop_demo_gateway() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}

# Resolve NHS numbers (one a line) to gateway ids; prints /fhir/Patient/<id>/$everything paths.
resolve() { # port nhs-file
    local nhs id
    while read -r nhs; do
        id=$(curl -sf -H "Authorization: Bearer $token" \
            "http://127.0.0.1:$1/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|$nhs" \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
        echo "/fhir/Patient/$id/\$everything"
    done < "$2"
}

# A wrk script rotating over the paths of a file, every request the same headers.
rotate_lua() { # paths-file lua-file
    cat > "$2" <<LUA
local paths = {}
for line in io.lines("$1") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], {["Accept"] = "application/fhir+json", ["Authorization"] = "Bearer $token"})
end
LUA
}

# CPU time a process has used (user + system, every thread), in clock ticks.
cpu_ticks() { # pid
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# Microseconds of CPU per answer: clock ticks over a run and the answers in it.
per_answer_us() { # ticks answers
    awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.0f", t / hz / n * 1e6 }'
}

# One wrk --latency output file -> "requests/s p50_ms p99_ms requests".
wrk_figures() { # wrk-output-file
    python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(pct):
    value, unit = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, text, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M).group(1))
total = int(re.search(r"^\s+(\d+) requests in", text, re.M).group(1))
print(f"{rps:.1f} {ms(50):.3f} {ms(99):.3f} {total}")
PY
}
