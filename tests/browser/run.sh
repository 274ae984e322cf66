#!/usr/bin/env bash
# Browser tests of the console: builds and starts `dangjian` in dev mode (fake WeChat, a temp data
# dir, a free port), then walks the console in headless Chromium (tests/browser/console.mjs).
# Needs: chromium (Debian: apt-get install -y chromium chromium-driver fonts-wqy-microhei), node.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "!!! BROWSER TESTS DID NOT RUN: $chromium is missing (apt-get install -y chromium chromium-driver fonts-wqy-microhei)" >&2
  exit 2
fi
[ -d "$here/node_modules/playwright-core" ] || (cd "$here" && npm ci --no-audit --no-fund)
(cd "$root" && cargo build --quiet)
data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export DANGJIAN_ENV=dev DANGJIAN_BIND="127.0.0.1:$port" DANGJIAN_PUBLIC_URL="http://127.0.0.1:$port"
export DANGJIAN_DATABASE_URL="sqlite://$data/dangjian.db?mode=rwc"
export DANGJIAN_ADMIN_USER=browser DANGJIAN_ADMIN_PASSWORD=browser-test-password-1
(cd "$data" && exec "$root/target/debug/dangjian" serve) > "$data/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
mkdir -p "$here/artifacts"
BASE="http://127.0.0.1:$port" CHROMIUM="$chromium" ARTIFACTS="$here/artifacts" \
  node "$here/console.mjs" || { echo "--- server log"; tail -50 "$data/server.log"; exit 1; }
