#!/usr/bin/env bash
# Peer comparison, one command: the bare-axum ceiling, this server (SQLite + in-process cache, and
# PostgreSQL + Redis), and the Python peer WeRoBot behind gunicorn (gevent: its fastest setup; sync:
# stock), all on this machine, all driven by the same load generator in its own process
# (bench/webhook.rs --url) with distinct signed and AES-encrypted messages for the whole run.
#
#   bash bench/peer/run.sh                 # MESSAGES=300000 PEER_MESSAGES=30000 CONNS="16 64"
#   GENERATOR=wrk bash bench/peer/run.sh   # the same servers driven by wrk (DURATION=6 s a run)
#
# With GENERATOR=wrk each run gets its own freshly built messages (`bench/webhook.rs --dump`,
# one file per wrk thread: bench/peer/wrk.lua), MESSAGES=400000 per run of ours (more than a
# 6-second run sends: a run that had to send a message twice says "wrapped").
#
# Needs: python3 with `pip install werobot gunicorn gevent`; PostgreSQL and Redis for the second
# row (skipped with a loud line when DANGJIAN_BENCH_DATABASE_URL is unset).
set -euo pipefail
cd "$(dirname "$0")/../.."

GENERATOR=${GENERATOR:-rust}
case "$GENERATOR" in
  rust) MESSAGES=${MESSAGES:-300000}; PEER_MESSAGES=${PEER_MESSAGES:-30000} ;;
  wrk) MESSAGES=${MESSAGES:-400000}; PEER_MESSAGES=${PEER_MESSAGES:-100000}; DURATION=${DURATION:-6}
       command -v wrk >/dev/null || { echo "GENERATOR=wrk needs wrk (apt-get install wrk)" >&2; exit 1; } ;;
  *) echo "GENERATOR is rust or wrk" >&2; exit 1 ;;
esac
CONNS=${CONNS:-"16 64"}
PG_URL=${DANGJIAN_BENCH_DATABASE_URL:-}
REDIS_URL=${DANGJIAN_BENCH_REDIS_URL:-redis://127.0.0.1:6379}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --bin dangjian 2>&1 | tail -1
cargo bench --no-run --bench webhook --bench hello 2>&1 | tail -1
TARGET=${CARGO_TARGET_DIR:-target}
bin() { ls -t "$TARGET"/release/deps/"$1"-* | grep -v '\.d$' | head -n1; }
GEN=$(bin webhook)
HELLO=$(bin hello)

wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

start_dangjian() { # port, database url, redis url or ""
  local dir="$work/dj$1"; mkdir -p "$dir/content"
  env DANGJIAN_BIND=127.0.0.1:$1 DANGJIAN_DATABASE_URL="$2" ${3:+DANGJIAN_REDIS_URL=$3} \
    DANGJIAN_REDIS_PREFIX="peer$1:" DANGJIAN_CONTENT_DIR="$dir/content" DANGJIAN_DATA_DIR="$dir/data" \
    DANGJIAN_WECHAT_MESSAGE_MODE=safe DANGJIAN_LOG=warn "$TARGET"/release/dangjian serve >"$dir/log" 2>&1 &
  pids+=($!); wait_port "$1"
}

run() { # label, port, messages, conns -> prints "label|conns|rps|p50|p99|errors"
  [ "$GENERATOR" = wrk ] && { run_wrk "$@"; return; }
  local out
  out=$("$GEN" --url "http://127.0.0.1:$2" --messages "$3" --concurrency "$4" 2>/dev/null || true)
  local rps p50 p99 err
  rps=$(sed -n 's/^throughput: \([0-9]*\) msg\/s.*/\1/p' <<<"$out")
  p50=$(sed -n 's/.*p50 \([0-9.]*\),.*/\1/p' <<<"$out")
  p99=$(sed -n 's/.*p99 \([0-9.]*\),.*/\1/p' <<<"$out")
  err=$(sed -n 's/^requests: .*errors: \([0-9]*\),.*/\1/p' <<<"$out")
  echo "$1|$4|${rps:-0}|${p50:-?}|${p99:-?}|${err:-?}"
}

run_wrk() { # the same, driven by wrk with messages built for this run only
  "$GEN" --messages "$3" --dump "$work/req" --split 2 >/dev/null 2>&1
  local out sum rps p50 p99 err wrapped
  out=$(WRK_REQUESTS="$work/req" wrk -t2 -c"$4" -d"${DURATION}s" --latency -s bench/peer/wrk.lua \
    "http://127.0.0.1:$2/" 2>&1 || true)
  rm -f "$work"/req.*
  rps=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' <<<"$out")
  sum=$(grep '^wrk-summary' <<<"$out" || true)
  field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$sum"; }
  p50=$(field p50_ms); p99=$(field p99_ms); wrapped=$(field wrapped)
  local e1 e2; e1=$(field errors); e2=$(field non2xx); err=$(( ${e1:-0} + ${e2:-0} ))
  # The ceiling and the peer keep no de-duplication record: sending a message twice costs them nothing.
  [[ "$1" == dangjian* ]] && [ "${wrapped:-0}" -gt 0 ] && err="$err (wrapped)"
  echo "$1|$4|${rps:-0}|${p50:-?}|${p99:-?}|$err"
}

replays() { # our server's de-duplication replays must stay 0 (every message distinct)
  curl -s "http://127.0.0.1:$1/metrics" | awk '/^dangjian_webhook_outcomes_total\{/ { all += $2; if ($1 ~ /retry_(replayed|while_running)/) r += $2 } END { printf "%d of %d messages", r, all }'
}

"$HELLO" --bind 127.0.0.1:18091 >/dev/null 2>&1 & pids+=($!); wait_port 18091
start_dangjian 18090 "sqlite://$work/dj18090/bench.db?mode=rwc" ""
if [ -n "$PG_URL" ]; then
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS dj_peer_bench WITH (FORCE)" -c "CREATE DATABASE dj_peer_bench"
  start_dangjian 18093 "${PG_URL%/*}/dj_peer_bench" "$REDIS_URL"
else
  echo "NOTE: DANGJIAN_BENCH_DATABASE_URL unset: the PostgreSQL + Redis row is not measured" >&2
fi
(cd bench/peer && gunicorn -w 2 -k gevent -b 127.0.0.1:18092 --log-level warning werobot_app:app) & pids+=($!)
(cd bench/peer && gunicorn -w 2 -b 127.0.0.1:18094 --log-level warning werobot_app:app) & pids+=($!)
wait_port 18092; wait_port 18094

rows=()
for c in $CONNS; do
  # Interleaved, pair by pair, so drift of the machine hits all alike.
  rows+=("$(run "bare axum hello (ceiling)" 18091 "$MESSAGES" "$c")")
  rows+=("$(run "dangjian, SQLite + in-process cache" 18090 "$MESSAGES" "$c")")
  [ -n "$PG_URL" ] && rows+=("$(run "dangjian, PostgreSQL + Redis" 18093 "$MESSAGES" "$c")")
  rows+=("$(run "WeRoBot + gunicorn, 2 gevent workers" 18092 "$PEER_MESSAGES" "$c")")
  rows+=("$(run "WeRoBot + gunicorn, 2 sync workers" 18094 "$PEER_MESSAGES" "$c")")
done

echo
if [ "$GENERATOR" = wrk ]; then gen_name="wrk -t2, ${DURATION} s a run (bench/peer/wrk.lua)"; else gen_name="bench/webhook.rs --url (own process)"; fi
echo "measured $(date -u +%Y-%m-%d) on $(nproc) cores; generator: $gen_name"
echo "| server | conns | msg/s | p50 ms | p99 ms | errors | × ceiling | × peer best |"
echo "|---|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
  IFS='|' read -r label c rps p50 p99 err <<<"$r"
  ceil=0; peer=0
  for s in "${rows[@]}"; do
    IFS='|' read -r l2 c2 r2 _ <<<"$s"
    [ "$c2" = "$c" ] || continue
    [[ "$l2" == bare* ]] && ceil=$r2
    [[ "$l2" == WeRoBot* ]] && [ "$r2" -gt "$peer" ] && peer=$r2
  done
  xc=$(awk -v a="$rps" -v b="$ceil" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  xp=$(awk -v a="$rps" -v b="$peer" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }')
  echo "| $label | $c | $rps | $p50 | $p99 | $err | $xc | $xp |"
done
echo
echo "de-duplication replays (must be 0): SQLite $(replays 18090)${PG_URL:+, PostgreSQL $(replays 18093)}"
echo "peak RSS of dangjian (SQLite): $(awk '/VmHWM/ {print $2 " kB"}' /proc/"${pids[1]}"/status 2>/dev/null || echo '?')"
