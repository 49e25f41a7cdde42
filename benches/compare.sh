#!/usr/bin/env bash
# Concord's `$everything` throughput beside nginx handing out the very same answers, on
# 127.0.0.1, in alternating rounds:
#
#   nginx static   nginx serving the gateway's captured answers as files (the floor: no work
#                  beyond reading a file and writing it to the socket)
#   nginx proxy    a plain nginx reverse proxy (upstream keepalive) in front of nginx static
#   concord        the demo gateway (NDJSON sources, as in load.sh) computing each answer:
#                  bearer token, policy, audit record, merge, Bundle
#
#   bash benches/compare.sh        # needs wrk and nginx (apt-get install wrk nginx), curl, python3
#
# The first COMPARE_PEOPLE (50) demo people are resolved to gateway ids and each one's
# `$everything` answer is saved byte for byte; every server is then asked for the same paths
# with the same request (Accept and the same bearer token), by wrk (1 thread, 32 connections,
# COMPARE_SECONDS per run, default 10) rotating over the people, COMPARE_ROUNDS times (5) in
# the order static, proxy, concord. Prints each run, then the medians per server, the median
# of the per-round ratios concord/static and concord/proxy, the gateway's CPU time per answer
# (user + system from /proc/<pid>/stat over each run, every thread: the audit writer and SQLite
# included; on a machine shared with other work it moves far less than requests/s do), its
# peak resident memory (VmHWM) and the mean answer size. A run with any non-2xx answer fails
# the script.
#
# COMPARE_UPSTREAMS=1 adds a second part: the same gateway with the three demo providers as
# FHIR upstreams (`kind = "fhir"`, `everything_operation = true`) served by a static nginx
# from files generated out of the same NDJSON exports, against those upstreams' own
# `$everything` called directly; it adds 2 x COMPARE_ROUNDS x COMPARE_SECONDS.
#
# Bounded: with the defaults about 3 minutes after the build (15 runs of 10 s). Only loopback,
# high ports from COMPARE_PORT (18090) to COMPARE_PORT+4; nginx runs as the caller with its
# own prefix and config in a temporary directory, and everything started here is stopped on
# exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common/demo.sh
. benches/common/demo.sh
export PATH="$HOME/.cargo/bin:$PATH"
SECONDS_TO_RUN="${COMPARE_SECONDS:-10}"
ROUNDS="${COMPARE_ROUNDS:-5}"
PEOPLE="${COMPARE_PEOPLE:-50}"
UPSTREAMS="${COMPARE_UPSTREAMS:-0}"
PORT="${COMPARE_PORT:-18090}"
CONNECTIONS=32
PORT_STATIC=$((PORT + 1))
PORT_PROXY=$((PORT + 2))
PORT_UPSTREAM=$((PORT + 3))
PORT_GATEWAY2=$((PORT + 4))

die() { echo "compare.sh: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
NGINX="${COMPARE_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
[[ -x "$NGINX" ]] || die "nginx is not installed (apt-get install nginx)"
command -v curl >/dev/null || die "curl is not installed"
command -v python3 >/dev/null || die "python3 is not installed"
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/concord"

work=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
    for p in ${pids[@]+"${pids[@]}"}; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # url: until it answers 2xx, for at most 10 s
    local _
    for _ in $(seq 1 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
    die "nothing answered at $1"
}

# nginx as the caller: its own prefix, pid file, logs and temp directories under $work.
start_nginx() { # name, then the http{} body on stdin
    local dir="$work/nginx-$1"
    mkdir -p "$dir/logs" "$dir/tmp"
    {
        # Started by root, nginx would run its workers as nobody, who cannot read $work.
        if [[ "$(id -u)" == 0 ]]; then echo "user root root;"; fi
        cat <<CONF
daemon off;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    types { application/fhir+json json; }
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
CONF
        cat
        echo "}"
    } > "$dir/nginx.conf"
    "$NGINX" -q -t -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" \
        || die "nginx $1: bad config ($dir/nginx.conf)"
    "$NGINX" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" &
    pids+=("$!")
}

run() { # label port lua round [pid]: one wrk run, appended to $work/results.txt; with a pid,
        # that process's CPU time per answer goes to $work/cpu.txt
    local out="$work/wrk-$1-$4.txt" rps p50 p99 total before=""
    [[ -n "${5:-}" ]] && before=$(cpu_ticks "$5")
    wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_TO_RUN}s" --latency -s "$3" "http://127.0.0.1:$2" > "$out"
    if grep -q "Non-2xx or 3xx responses" "$out"; then
        cat "$out" >&2
        die "round $4, $1: some answers were not 2xx ($(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$out"))"
    fi
    read -r rps p50 p99 total < <(wrk_figures "$out")
    local cpu=""
    if [[ -n "$before" ]]; then
        cpu=$(per_answer_us "$(( $(cpu_ticks "$5") - before ))" "$total")
        echo "$cpu" >> "$work/cpu.txt"
        cpu="   CPU $cpu µs/answer"
    fi
    printf '  round %s  %-14s %10s req/s   p50 %7s ms   p99 %7s ms%s\n' "$4" "$1" "$rps" "$p50" "$p99" "$cpu"
    if grep -q "Socket errors" "$out"; then echo "    $1: $(grep 'Socket errors' "$out" | sed 's/^ *//')"; fi
    echo "$4 $1 $rps $p50 $p99 $total" >> "$work/results.txt"
}

summary() { # label... (the first is the one compared with the others)
    python3 - "$work/results.txt" "$@" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
labels = sys.argv[2:]
runs = {}  # label -> round -> (rps, p50, p99)
for rnd, label, rps, p50, p99, _ in rows:
    runs.setdefault(label, {})[rnd] = (float(rps), float(p50), float(p99))
print(f"  {'median of ' + str(len(runs[labels[0]])) + ' runs':<22} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
for label in labels[1:] + labels[:1]:
    cols = [statistics.median(v[i] for v in runs[label].values()) for i in range(3)]
    print(f"  {label:<22} {cols[0]:>10.0f} {cols[1]:>9.3f} {cols[2]:>9.3f}")
subject = labels[0]
for other in labels[1:]:
    rounds = sorted(set(runs[subject]) & set(runs[other]))
    cols = [statistics.median(runs[subject][r][i] / runs[other][r][i] for r in rounds) for i in range(3)]
    print(f"  {subject + '/' + other:<22} {cols[0]:>10.3f} {cols[1]:>9.2f} {cols[2]:>9.2f}   (median of the per-round ratios)")
PY
}

# ---- Part 1: the demo gateway against nginx handing out its answers ---------------------

gateway_config "$work/gateway" "$PORT"
"$BIN" serve --config "$work/gateway/concord.toml" &
gateway=$!
pids+=("$gateway")
token=$("$BIN" dev-token --config "$work/gateway/concord.toml" --ttl 7200 2>/dev/null)
wait_for "http://127.0.0.1:$PORT/readyz"

demo_nhs "$PEOPLE" > "$work/nhs.txt"
resolve "$PORT" "$work/nhs.txt" > "$work/paths.txt"

# Capture each answer (this also warms the gateway's caches): /fhir/Patient/<id>/$everything
# is served by nginx from docroot/fhir/Patient/<id>/everything.json.
docroot="$work/docroot"
while read -r path; do
    file="$docroot${path%\$everything}everything.json"
    mkdir -p "$(dirname "$file")"
    curl -sf -o "$file" -H "Accept: application/fhir+json" -H "Authorization: Bearer $token" \
        "http://127.0.0.1:$PORT$path" || die "the gateway did not answer $path"
done < "$work/paths.txt"
answers=$(find "$docroot" -name everything.json | wc -l)
mean_bytes=$(find "$docroot" -name everything.json -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s / NR }')

start_nginx static <<CONF
    server {
        listen 127.0.0.1:$PORT_STATIC;
        root $docroot;
        location ~ "^/fhir/Patient/(?<person>[^/]+)/[\$]everything\$" {
            try_files /fhir/Patient/\$person/everything.json =404;
        }
        location / { return 404; }
    }
CONF
# Buffers that hold a whole answer, so that nginx never writes one to a temporary file.
start_nginx proxy <<CONF
    upstream static {
        server 127.0.0.1:$PORT_STATIC;
        keepalive 32;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$PORT_PROXY;
        location / {
            proxy_pass http://static;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffers 64 8k;
        }
    }
CONF
first=$(head -n 1 "$work/paths.txt")
first_file="$docroot${first%\$everything}everything.json"
for port in "$PORT_STATIC" "$PORT_PROXY"; do
    wait_for "http://127.0.0.1:$port$first"
    curl -sf "http://127.0.0.1:$port$first" | cmp -s - "$first_file" \
        || die "nginx on $port does not hand out the captured answer byte for byte"
done
ctype=$(curl -sf -o /dev/null -w '%{content_type}' "http://127.0.0.1:$PORT_PROXY$first")
[[ "$ctype" == application/fhir+json* ]] || die "nginx answers with content type $ctype"

rotate_lua "$work/paths.txt" "$work/rotate.lua"
: > "$work/results.txt"
echo "compare: $answers people, mean answer $mean_bytes bytes, wrk 1 thread $CONNECTIONS connections, ${SECONDS_TO_RUN}s per run, $ROUNDS rounds; gateway pid $gateway, nginx worker_processes 2, $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
    run "nginx-static" "$PORT_STATIC" "$work/rotate.lua" "$round"
    run "nginx-proxy" "$PORT_PROXY" "$work/rotate.lua" "$round"
    run "concord" "$PORT" "$work/rotate.lua" "$round" "$gateway"
done
echo
summary "concord" "nginx-static" "nginx-proxy"
echo "  concord CPU per answer (user + system, median of the runs): $(sort -n "$work/cpu.txt" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }') µs"
echo "  concord peak memory (VmHWM): $(awk '/^VmHWM/ { print $2, $3 }' "/proc/$gateway/status")"
echo "  mean answer: $mean_bytes bytes ($answers answers)"

[[ "$UPSTREAMS" == 1 ]] || exit 0

# ---- Part 2: the same gateway in front of FHIR upstreams against the upstreams direct ----
# Each demo provider becomes a FHIR server: nginx serving, under /<source>/fhir, a searchset
# Bundle for `Patient?identifier=<system>|<nhs>` and for `Patient/<id>/$everything` (the
# patient and every resource naming it in subject or patient), and reads of single resources,
# all built from the NDJSON exports.

kill "$gateway" 2>/dev/null || true
wait "$gateway" 2>/dev/null || true
upstream_root="$work/upstreams"
python3 - examples/demo "$upstream_root" "http://127.0.0.1:$PORT_UPSTREAM" gp community socialcare \
    > "$work/upstream-ids.txt" <<'PY'
import collections, json, os, sys
demo, out, base, sources = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
NHS = "https://fhir.nhs.uk/Id/nhs-number"
def bundle(src, resources):
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"{base}/{src}/fhir/{r['resourceType']}/{r['id']}",
                       "resource": r, "search": {"mode": "match"}} for r in resources]}
def write(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, separators=(",", ":"))
for src in sources:
    patients, by_nhs, by_patient = {}, collections.defaultdict(list), collections.defaultdict(list)
    for name in sorted(os.listdir(f"{demo}/{src}")):
        if not name.endswith(".ndjson"):
            continue
        for line in open(f"{demo}/{src}/{name}"):
            if not line.strip():
                continue
            r = json.loads(line)
            write(f"{out}/{src}/read/{r['resourceType']}/{r['id']}.json", r)
            if r["resourceType"] == "Patient":
                patients[r["id"]] = r
                for i in r.get("identifier", []):
                    if i.get("system") == NHS:
                        by_nhs[i["value"]].append(r["id"])
                continue
            for element in ("subject", "patient"):
                ref = (r.get(element) or {}).get("reference", "")
                if ref.startswith("Patient/"):
                    by_patient[ref[len("Patient/"):]].append(r)
                    break
    write(f"{out}/{src}/search/empty.json", bundle(src, []))
    for nhs, ids in by_nhs.items():
        write(f"{out}/{src}/search/{nhs}.json", bundle(src, [patients[i] for i in ids]))
        for i in ids:
            print(nhs, src, i)
    for i, p in patients.items():
        write(f"{out}/{src}/everything/{i}.json", bundle(src, [p] + by_patient[i]))
PY

start_nginx upstreams <<CONF
    map \$arg_identifier \$nhs {
        "~(?<n>[0-9]{10})\$" \$n;
        default none;
    }
    server {
        listen 127.0.0.1:$PORT_UPSTREAM;
        root $upstream_root;
        location ~ "^/(?<src>[a-z]+)/fhir/Patient\$" {
            try_files /\$src/search/\$nhs.json /\$src/search/empty.json =404;
        }
        location ~ "^/(?<src>[a-z]+)/fhir/Patient/(?<person>[^/]+)/[\$]everything\$" {
            try_files /\$src/everything/\$person.json =404;
        }
        location ~ "^/(?<src>[a-z]+)/fhir/(?<type>[A-Za-z]+)/(?<rid>[^/]+)\$" {
            try_files /\$src/read/\$type/\$rid.json =404;
        }
        location = /status { stub_status; }
        location / { return 404; }
    }
CONF
wait_for "http://127.0.0.1:$PORT_UPSTREAM/status"

gateway_config "$work/gateway2" "$PORT_GATEWAY2"
sed -i -e "s|^listen = .*|listen = \"127.0.0.1:$PORT_GATEWAY2\"|" -e '/^\[\[source\]\]/,$d' "$work/gateway2/concord.toml"
for src in gp community socialcare; do
    awk -v s="$src" '$0 == "[[source]]" { keep = 0 } $0 == "id = \"" s "\"" { keep = 1; print "[[source]]" }
        keep && /^(id|name|ods) = / { print }' concord.toml
    printf 'kind = "fhir"\nbase_url = "http://127.0.0.1:%s/%s/fhir"\neverything_operation = true\n\n' "$PORT_UPSTREAM" "$src"
done >> "$work/gateway2/concord.toml"
"$BIN" serve --config "$work/gateway2/concord.toml" &
gateway2=$!
pids+=("$gateway2")
wait_for "http://127.0.0.1:$PORT_GATEWAY2/readyz"

resolve "$PORT_GATEWAY2" "$work/nhs.txt" > "$work/paths2.txt"
while read -r nhs; do
    awk -v n="$nhs" '$1 == n { print "/" $2 "/fhir/Patient/" $3 "/$everything?_count=200" }' "$work/upstream-ids.txt"
done < "$work/nhs.txt" > "$work/direct.txt"
: > "$work/sizes2.txt"
while read -r path; do
    curl -sf -o "$work/answer.json" -w '%{size_download}\n' -H "Accept: application/fhir+json" \
        -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT_GATEWAY2$path" >> "$work/sizes2.txt" \
        || die "the gateway on FHIR upstreams did not answer $path"
done < "$work/paths2.txt"
while read -r path; do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT_UPSTREAM$path" || die "the upstreams did not answer $path"
done < "$work/direct.txt"
upstream_requests() { curl -sf "http://127.0.0.1:$PORT_UPSTREAM/status" | awk 'NR == 3 { print $3 }'; }

rotate_lua "$work/paths2.txt" "$work/rotate2.lua"
rotate_lua "$work/direct.txt" "$work/direct.lua"
: > "$work/results.txt"
echo
echo "compare, part 2: the gateway with the 3 demo providers as FHIR upstreams (everything_operation, static nginx), $(wc -l < "$work/paths2.txt") people, $(wc -l < "$work/direct.txt") upstream \$everything answers; mean gateway answer $(awk '{ s += $1 } END { printf "%.0f", s / NR }' "$work/sizes2.txt") bytes; gateway pid $gateway2"
for round in $(seq 1 "$ROUNDS"); do
    run "upstreams" "$PORT_UPSTREAM" "$work/direct.lua" "$round"
    before=$(upstream_requests)
    run "concord-fhir" "$PORT_GATEWAY2" "$work/rotate2.lua" "$round"
    after=$(upstream_requests)
    echo "$round $((after - before - 1))" >> "$work/upstream-calls.txt"
done
echo
summary "concord-fhir" "upstreams"
python3 - "$work/results.txt" "$work/upstream-calls.txt" "$(wc -l < "$work/paths2.txt")" "$(wc -l < "$work/direct.txt")" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
calls = dict(line.split() for line in open(sys.argv[2]))
people, direct = int(sys.argv[3]), int(sys.argv[4])
made = [int(calls[r]) / int(total) for r, label, _, _, _, total in rows if label == "concord-fhir"]
per = statistics.median(made) if made else float("nan")
gw = statistics.median(float(rps) for _, label, rps, *_ in rows if label == "concord-fhir")
up = statistics.median(float(rps) for _, label, rps, *_ in rows if label == "upstreams")
print(f"  upstream calls per gateway answer: {per:.2f} (median of the rounds; {direct / people:.2f} $everything per person)")
print(f"  people's records per second: through the gateway {gw:.0f}, upstreams direct {up * people / direct:.0f} (each person's $everything from every provider holding them)")
PY
echo "  concord-fhir peak memory (VmHWM): $(awk '/^VmHWM/ { print $2, $3 }' "/proc/$gateway2/status")"
