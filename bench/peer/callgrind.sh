#!/usr/bin/env bash
# Instructions per webhook message: the release server (SQLite, safe mode) under valgrind's
# callgrind, fed distinct signed and encrypted messages by the load generator in its own process.
# Unlike a timed run, the count is repeatable to a fraction of a percent whatever else the machine
# is doing, so it tells whether a change to the hot path saved work. It counts user space only
# (no system calls, no lock contention), and valgrind hides the CPU's SHA instructions, so SHA-1
# shows at several times its real share. Not part of CI.
#
#   bash bench/peer/callgrind.sh                  # MESSAGES=3000 WARMUP=5000 LOG=info
#   BIN=/path/to/other/dangjian bash bench/peer/callgrind.sh   # an earlier build, for an A/B
#
# Prints the total and per-message count; the profile stays in $OUT (callgrind_annotate $OUT).
set -euo pipefail
cd "$(dirname "$0")/../.."
MESSAGES=${MESSAGES:-3000}
# The generator's messages come from 5,000 followers: a warm-up of 5,000 has seen each of them
# once, so the measured messages are from known followers, as in a timed run of a few seconds.
WARMUP=${WARMUP:-5000}
LOG=${LOG:-info}
PORT=${PORT:-18096}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-callgrind.webhook.out}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d)
cleanup() { kill "${srv:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

if [ -z "${BIN:-}" ]; then
  cargo build --release --bin dangjian 2>&1 | tail -1
  BIN=$TARGET/release/dangjian
fi
cargo bench --no-run --bench webhook 2>&1 | tail -1
GEN=$(ls -t "$TARGET"/release/deps/webhook-* | grep -v '\.d$' | head -n1)

mkdir -p "$work/content"
env DANGJIAN_BIND=127.0.0.1:$PORT DANGJIAN_DATABASE_URL="sqlite://$work/cg.db?mode=rwc" \
  DANGJIAN_CONTENT_DIR="$work/content" DANGJIAN_DATA_DIR="$work/data" \
  DANGJIAN_WECHAT_MESSAGE_MODE=safe DANGJIAN_LOG="$LOG" TOKIO_WORKER_THREADS=2 \
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$BIN" serve >"$work/log" 2>&1 &
srv=$!
for _ in $(seq 1 600); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
# Warm up (connections, caches, prepared statements), then count only the measured messages.
"$GEN" --url "http://127.0.0.1:$PORT" --messages "$WARMUP" --concurrency 16 >/dev/null
callgrind_control -z "$srv" >/dev/null 2>&1
"$GEN" --url "http://127.0.0.1:$PORT" --messages "$MESSAGES" --concurrency 16 | grep '^requests'
callgrind_control -d "$srv" >/dev/null 2>&1
# The dump is written asynchronously: wait for it (a loaded machine can take a few seconds).
dump=
for _ in $(seq 1 100); do
  dump=$(ls "$work"/cg.*.* 2>/dev/null | head -n1)
  [ -n "$dump" ] && break
  sleep 0.2
done
[ -n "$dump" ] || { echo "callgrind wrote no dump" >&2; exit 1; }
sleep 0.5
cp "$dump" "$OUT"
ir=$(callgrind_annotate "$OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
# The batched write of followers' last-interaction times runs once a second on SQLite's own
# thread; how many followers are pending when counting starts varies from run to run, so it is
# shown apart (compare the counts without it between builds).
db=$(callgrind_annotate --inclusive=yes "$OUT" 2>/dev/null | awk '/sqlx_sqlite::connection::execute::ExecuteIter/ { gsub(",", "", $1); print $1; exit }') || true
db=${db:-0}
echo "$ir instructions over $MESSAGES messages: $((ir / MESSAGES)) per message, $(((ir - db) / MESSAGES)) without the SQLite statements (log filter $LOG; profile in $OUT)"
