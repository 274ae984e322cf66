#!/usr/bin/env bash
# Memory soak: this server (release build, embedded backend) under a steady load of distinct,
# signed, AES-encrypted messages from the load generator in its own process; the server's RSS is
# sampled every 10 s. Not part of CI.
#
#   bash bench/peer/soak.sh                       # RATE=2000 DURATION=600 (ten minutes)
#
# Passes when no request failed and the peak RSS stays under 100 MiB; prints the samples so a
# trend (growth) is visible too.
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${RATE:-2000}
DURATION=${DURATION:-600}
PORT=${PORT:-18095}
TARGET=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
cleanup() { kill "${srv:-}" "${sampler:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --bin dangjian 2>&1 | tail -1
cargo bench --no-run --bench webhook 2>&1 | tail -1
GEN=$(ls -t "$TARGET"/release/deps/webhook-* | grep -v '\.d$' | head -n1)

mkdir -p "$work/content"
env DANGJIAN_BIND=127.0.0.1:$PORT DANGJIAN_DATABASE_URL="sqlite://$work/soak.db?mode=rwc" \
  DANGJIAN_CONTENT_DIR="$work/content" DANGJIAN_DATA_DIR="$work/data" DANGJIAN_LOG=warn \
  "$TARGET"/release/dangjian serve >"$work/log" 2>&1 &
srv=$!
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2}' /proc/$srv/status; }
( while sleep 10; do echo "$(date +%s) $(rss)"; done ) >"$work/rss" &
sampler=$!

"$GEN" --url "http://127.0.0.1:$PORT" --rate "$RATE" --duration "$DURATION"
kill "$sampler"; sampler=
peak=$(awk '/VmHWM/ {print $2}' /proc/$srv/status)
echo
echo "RSS samples (kB, every 10 s):"
awk '{printf "%s ", $2} END {print ""}' "$work/rss"
first=$(awk 'NR==3 {print $2}' "$work/rss"); last=$(tail -n1 "$work/rss" | awk '{print $2}')
echo "after 30 s: ${first} kB; at the end: ${last} kB; peak (VmHWM): ${peak} kB"
replays=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^dangjian_webhook_outcomes_total\{/ { all += $2; if ($1 ~ /retry_(replayed|while_running)/) r += $2 } END { printf "%d of %d messages", r, all }')
echo "de-duplication replays (must be 0): $replays"
[ "${replays%% *}" = 0 ] || { echo "FAIL: replays" >&2; exit 1; }
[ "$peak" -lt $((100 * 1024)) ] || { echo "FAIL: peak RSS ${peak} kB >= 100 MiB" >&2; exit 1; }
echo "PASS: no errors, no replays, peak RSS ${peak} kB < 100 MiB"
