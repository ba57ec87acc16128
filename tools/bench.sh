#!/usr/bin/env bash
# Runs every published load figure in turn against a fresh switch each time, and the resampler
# comparison. Output goes to stdout; BENCHMARKS.md records a run of it.
#   tools/bench.sh            # everything (about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/switchboard
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
run() { echo; echo "== switchboard load $*"; "$bin" load --spawn "$@"; }
run --protocol ws --calls 200 --ramp-seconds 10 --hold-seconds 20
run --protocol ws --calls 1000 --ramp-seconds 20 --hold-seconds 20
run --protocol smartivr --calls 2000 --ramp-seconds 20 --hold-seconds 20
run --protocol ringover --calls 2000 --ramp-seconds 20 --hold-seconds 20
run --protocol twilio --calls 2000 --ramp-seconds 20 --hold-seconds 20
run --protocol smartivr --bot twilio --calls 1000 --ramp-seconds 20 --hold-seconds 20
# The network-bot path: a connection per call (the baseline), shared connections (the default),
# and shared connections with 100 ms chunks toward the bot.
run --protocol ws --bot live-call --calls 100 --ramp-seconds 10 --hold-seconds 20 --bot-streams 1
run --protocol ws --bot live-call --calls 100 --ramp-seconds 10 --hold-seconds 20
run --protocol ws --bot live-call --calls 100 --ramp-seconds 10 --hold-seconds 20 --bot-frame-ms 100
run --protocol ws --calls 100 --ramp-seconds 10 --hold-seconds 20
run --protocol ws --bot room --room-size 5 --calls 500 --ramp-seconds 20 --hold-seconds 20
run --protocol smartivr --mode setup --calls 5000 --concurrency 200
run --protocol smartivr --mode churn --calls 20000 --concurrency 200
echo
echo "== cargo bench --bench speech"
cargo bench --quiet --bench speech
echo
echo "== cargo bench --bench mixer"
cargo bench --quiet --bench mixer
echo
echo "== cargo bench --bench resample --features samplerate"
if command -v cmake >/dev/null; then
  cargo bench --quiet --bench resample --features samplerate
else
  echo "(cmake missing: rubato only)"
  cargo bench --quiet --bench resample
fi
