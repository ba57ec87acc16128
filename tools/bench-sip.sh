#!/usr/bin/env bash
# SIP figures: call set-ups per second with SIPp against a fresh switch (echo flow), then
# `switchboard load --protocol sip` streaming 20 ms RTP both ways (CPU and memory per call,
# echo round trip, and the spacing of the switch's packets against their 20 ms clock).
#   tools/bench-sip.sh [RATE] [CALLS]      # defaults: 200 calls/s, 4000 calls
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-200}
calls=${2:-4000}
command -v sipp >/dev/null || { echo "needs SIPp: apt-get install sip-tester" >&2; exit 1; }
cargo build --release --quiet
bin=$PWD/target/release/switchboard
run=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$run"' EXIT
free() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
http=$(free SOCK_STREAM); grpc=$(free SOCK_STREAM); sip=$(free SOCK_DGRAM)
cat >"$run/switchboard.toml" <<TOML
[server]
max_calls = 20000
keep_ended_calls = 1000
[http]
listen = "127.0.0.1:$http"
[grpc]
listen = "127.0.0.1:$grpc"
[sip]
listen = "127.0.0.1:$sip"
rtp_ports = "30000-39999"
invites_per_second = 100000
[store]
url = "sqlite://$run/switchboard.db"
instance_file = "$run/instance_id"
[recordings]
dir = "$run/recordings"
[bots.echo]
kind = "flow"
actions = [{ type = "answer" }, { type = "echo", duration = 86400000 }]
[[routes]]
bot = "echo"
TOML
RUST_LOG=warn "$bin" serve --config "$run/switchboard.toml" >/dev/null &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/health" >/dev/null && break; sleep 0.1; done
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
echo "== sipp -sf tools/sipp/setup.xml -r $rate -m $calls -l $((rate * 5)) 127.0.0.1:$sip"
start=$(date +%s.%N)
(cd "$run" && sipp -sf "$OLDPWD/tools/sipp/setup.xml" -r "$rate" -m "$calls" -l $((rate * 5)) \
  -timeout 120 -nostdin -trace_stat -stf stats.csv -trace_err -i 127.0.0.1 "127.0.0.1:$sip" \
  >/dev/null 2>&1) || true
end=$(date +%s.%N)
python3 - "$run/stats.csv" "$start" "$end" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
head, last = rows[0], rows[-1]
get = lambda name: last[head.index(name)]
ok, failed = int(get("SuccessfulCall(C)")), int(get("FailedCall(C)"))
seconds = float(sys.argv[3]) - float(sys.argv[2])
print(f"calls               {ok} completed, {failed} failed, in {seconds:.1f} s: {ok / seconds:.0f} set-ups (and hang-ups) per second")
PY
kill "$pid"; wait "$pid" 2>/dev/null || true
echo
echo "== switchboard load --spawn --protocol sip --calls 1000 --ramp-seconds 20 --hold-seconds 20"
"$bin" load --spawn --protocol sip --calls 1000 --ramp-seconds 20 --hold-seconds 20
echo
echo "== switchboard load --spawn --protocol sip --calls 500 --ramp-seconds 10 --hold-seconds 20"
"$bin" load --spawn --protocol sip --calls 500 --ramp-seconds 10 --hold-seconds 20
