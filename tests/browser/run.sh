#!/usr/bin/env bash
# Browser tests: every tests/browser/*.mjs, each against its own `dangjian` in dev mode (fake
# WeChat, a fresh temp data dir, a free port), in headless system Chromium (playwright-core).
# Needs: chromium (Debian: apt-get install -y chromium chromium-driver fonts-wqy-microhei), node.
# `cargo test` runs this from tests/browser.rs with DANGJIAN_BIN set to the binary cargo built for
# the tests; run by hand, it builds target/debug/dangjian (the same dev profile) itself.
# Screenshots go to $ARTIFACTS (default tests/browser/artifacts).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "!!! BROWSER TESTS DID NOT RUN: $chromium is missing (apt-get install -y chromium chromium-driver fonts-wqy-microhei)" >&2
  exit 2
fi
# Exactly the committed package-lock.json.
[ -d "$here/node_modules/playwright-core" ] || (cd "$here" && npm ci --no-audit --no-fund)
bin="${DANGJIAN_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --quiet --bin dangjian)
  bin="$root/target/debug/dangjian"
fi
artifacts="${ARTIFACTS:-$here/artifacts}"
mkdir -p "$artifacts"

server=""
data=""
stop() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  [ -n "$data" ] && rm -rf "$data"
  server="" data=""
}
trap stop EXIT

failed=()
ran=0
for spec in "$here"/*.mjs; do
  name="$(basename "$spec" .mjs)"
  data="$(mktemp -d)"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  (
    export DANGJIAN_ENV=dev DANGJIAN_BIND="127.0.0.1:$port" DANGJIAN_PUBLIC_URL="http://127.0.0.1:$port"
    export DANGJIAN_DATABASE_URL="sqlite://$data/dangjian.db?mode=rwc"
    export DANGJIAN_ADMIN_USER=browser DANGJIAN_ADMIN_PASSWORD=browser-test-password-1
    unset DANGJIAN_REDIS_URL
    cd "$data" && exec "$bin" serve
  ) > "$data/server.log" 2>&1 &
  server=$!
  up=""
  for _ in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then up=1; break; fi
    sleep 0.2
  done
  echo "# $name"
  if [ -z "$up" ]; then
    echo "not ok - $name: the server did not start"; tail -50 "$data/server.log"; failed+=("$name")
  elif ! BASE="http://127.0.0.1:$port" CHROMIUM="$chromium" ARTIFACTS="$artifacts/$name" \
      bash -c 'mkdir -p "$ARTIFACTS" && exec node "$0"' "$spec"; then
    echo "--- server log ($name)"; tail -50 "$data/server.log"; failed+=("$name")
  fi
  ran=$((ran + 1))
  stop
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "browser tests failed: ${failed[*]} (of $ran)" >&2
  exit 1
fi
echo "browser tests passed: $ran files"
