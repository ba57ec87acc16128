#!/usr/bin/env bash
# Cluster figures, on the local PostgreSQL and NATS: cross-node control latency (REST on switch
# B for a call held by switch A, forwarded over NATS, against the same request served by A
# itself), then the cost of cluster mode on the media path (500 live-call WebSocket callers
# against one switch with and without `[cluster]`).
#   tools/bench-cluster.sh [REQUESTS]      # default 1000
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-1000}
pg=${SWITCHBOARD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
nats=${SWITCHBOARD_TEST_NATS_URL:-nats://127.0.0.1:4222}
cargo build --release --quiet
bin=$PWD/target/release/switchboard
run=$(mktemp -d)
suffix=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')
db=switchboard_bench_$suffix
psql "$pg" -qc "CREATE DATABASE $db"
dburl="${pg%/*}/$db"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pg" -qc "DROP DATABASE IF EXISTS $db" || true
  rm -rf "$run"
}
trap cleanup EXIT
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
config() { # NAME HTTP GRPC CLUSTER(0|1)
  mkdir -p "$run/$1"
  cat <<TOML
[http]
listen = "127.0.0.1:$2"
[grpc]
listen = "127.0.0.1:$3"
[server]
max_calls = 5000
[store]
url = "$dburl"
instance_file = "$run/$1/instance_id"
[recordings]
dir = "$run/$1/recordings"
[auth]
api_keys = [{ key = "bench-key" }]
live_call_tokens = ["bench"]
[bots.echo]
kind = "flow"
actions = [{ type = "answer" }, { type = "echo", duration = 86400000 }]
[[routes]]
bot = "echo"
TOML
  if [[ $4 == 1 ]]; then
    printf '[cluster]\nenabled = true\nnats_url = "%s"\ncluster_name = "bench-%s"\nnode_id = "%s"\n' "$nats" "$suffix" "$1"
  fi
}
start() { # NAME HTTP GRPC CLUSTER -> pid in $started
  config "$@" >"$run/$1.toml"
  RUST_LOG=warn "$bin" serve --config "$run/$1.toml" >/dev/null &
  started=$!
  pids+=("$started")
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$2/health" >/dev/null && return 0; sleep 0.1; done
  echo "switch $1 did not start" >&2; return 1
}
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
ah=$(free); ag=$(free); bh=$(free); bg=$(free)
start a "$ah" "$ag" 1; apid=$started
start b "$bh" "$bg" 1
# One call held by A for the whole measurement.
"$bin" load --protocol ws --calls 1 --ramp-seconds 0 --hold-seconds 120 \
  --http "127.0.0.1:$ah" --grpc "127.0.0.1:$ag" --token bench >/dev/null &
pids+=("$!")
echo "== $requests x GET /calls/{id} of a call held by A: through B (forwarded over NATS), and on A"
python3 - "$ah" "$bh" "$requests" <<'PY'
import http.client, json, sys, time
a, b, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
H = {"Authorization": "Bearer bench-key"}
def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers=H)
    r = c.getresponse()
    return r.status, r.getheader("X-Switchboard-Node"), r.read()
deadline = time.time() + 30
call = None
while time.time() < deadline and call is None:
    status, _, body = get(a, "/calls?page_size=1")
    rows = json.loads(body).get("result", []) if status == 200 else []
    call = rows[0]["id"] if rows and rows[0].get("status") == "progressing" else None
    time.sleep(0.1)
if call is None:
    sys.exit("no call held by A")
for name, port in (("through B", b), ("on A", a)):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times, nodes = [], set()
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", f"/calls/{call}", headers=H)
        r = conn.getresponse()
        r.read()
        times.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            sys.exit(f"{name}: HTTP {r.status}")
        nodes.add(r.getheader("X-Switchboard-Node"))
    times.sort()
    pick = lambda q: times[int((len(times) - 1) * q)]
    print(f"{name:10s} n={n} p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.2f} ms, max {times[-1]:.2f} ms (answered by {', '.join(sorted(str(x) for x in nodes))})")
PY
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
for mode in 0 1; do
  h=$(free); g=$(free)
  start "media$mode" "$h" "$g" "$mode"
  echo
  echo "== switchboard load --protocol ws --calls 500 --ramp-seconds 10 --hold-seconds 20 ($([[ $mode == 1 ]] && echo 'with [cluster]' || echo 'without [cluster]'))"
  "$bin" load --protocol ws --calls 500 --ramp-seconds 10 --hold-seconds 20 \
    --http "127.0.0.1:$h" --grpc "127.0.0.1:$g" --token bench --pid "$started" | tail -4
  kill "$started"; wait "$started" 2>/dev/null || true
  pids=()
done
