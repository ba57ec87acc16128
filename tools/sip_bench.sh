#!/usr/bin/env bash
# SIP calls streaming 20 ms PCMU both ways against the echo flow: SIPp places CALLS calls (10 a
# second), each streaming for HOLD seconds; prints the switch's CPU time and peak RSS over the
# run. Loopback only.
#   tools/sip_bench.sh [CALLS] [HOLD]      # defaults: 100 calls, 20 s
# SWITCHBOARD_BIN=target/debug/switchboard runs another build (a quick check of the script).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-100}
hold=${2:-20}
if [ -z "${SWITCHBOARD_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${SWITCHBOARD_BIN:-$PWD/target/release/switchboard}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
cat > "$dir/config.toml" <<TOML
[http]
listen = "127.0.0.1:0"
[grpc]
listen = "127.0.0.1:0"
[server]
arbiters = 0
[sip]
listen = "127.0.0.1:25099"
rtp_ports = "32000-33999"
invites_per_second = 1000
[media]
max_call_duration = 0
[store]
url = "sqlite://$dir/db.sqlite"
instance_file = "$dir/instance_id"
[recordings]
dir = "$dir/recordings"
[bots.echo]
kind = "flow"
actions = [{ type = "answer" }, { type = "echo", duration = 600000 }]
[[routes]]
bot = "echo"
TOML
# A second of a 440 Hz tone, u-law: what every caller streams, looped.
python3 - "$dir/bench.wav" <<'PY'
import math, struct, sys
def ulaw(s):
    s = max(-32635, min(32635, s)); sign = 0x80 if s < 0 else 0; s = abs(s) + 0x84
    seg = 7
    while seg > 0 and not (s & (0x4000 >> (7 - seg))): seg -= 1
    return ~(sign | (seg << 4) | ((s >> (seg + 3)) & 0x0F)) & 0xFF
data = bytes(ulaw(int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(8000))
hdr = b"RIFF" + struct.pack("<I", 50 + len(data)) + b"WAVEfmt " + struct.pack("<IHHIIHHH", 18, 7, 1, 8000, 8000, 1, 8, 0)
hdr += b"fact" + struct.pack("<II", 4, len(data)) + b"data" + struct.pack("<I", len(data))
open(sys.argv[1], "wb").write(hdr + data)
PY
"$bin" serve --config "$dir/config.toml" > "$dir/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "SIP listening" "$dir/serve.log" && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
start=$(ticks); t0=$(date +%s.%N); peak=0
# SIPp expands no keys in a pause: the hold goes into a copy of the scenario.
sed "s/\[hold_ms\]/$((hold * 1000))/" tests/sip/bench_call.xml > "$dir/bench_call.xml"
(cd "$dir" && sipp 127.0.0.1:25099 -sf bench_call.xml -s bot -i 127.0.0.1 \
  -p 25098 -mp 25200 -r 10 -l "$calls" -m "$calls" -nostdin -timeout "$((hold + 60))s" > /dev/null 2> "$dir/sipp.err") &
sipp_pid=$!
while kill -0 "$sipp_pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status"); [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 1
done
wait "$sipp_pid" && ok=yes || ok=no
end=$(ticks); t1=$(date +%s.%N)
echo "calls=$calls hold=${hold}s sipp_success=$ok"
[ "$ok" = yes ] || tail -5 "$dir/sipp.err"
echo "switch CPU: $(echo "scale=1; ($end - $start) / $hz" | bc) s over $(echo "$t1 - $t0" | bc | cut -c1-5) s wall ($(echo "scale=1; 100 * ($end - $start) / $hz / ($t1 - $t0)" | bc)% of one core)"
echo "switch peak RSS: $((peak / 1024)) MiB"
http=$(grep -o 'http_addr=[0-9.:]*' "$dir/serve.log" | head -1 | cut -d= -f2)
echo "RTP frames of protocol sip (received, sent, dropped by cause):"
curl -s "http://$http/metrics" | grep 'protocol="sip"' | grep -v '^#' || true
