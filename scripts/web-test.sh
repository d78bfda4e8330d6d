#!/usr/bin/env bash
# Browser tests of the dashboard (web/e2e): builds mqstream, installs
# playwright-core (npm, pinned in web/e2e/package-lock.json) and runs the
# tests with node --test in headless Chromium against a real node on
# 127.0.0.1. Needs node >= 20, npm and Debian's chromium
# (apt-get install chromium), or CHROMIUM=/path/to/chrome.
# Screenshots of every view go to web/e2e/screenshots/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ]; then
  echo "web-test: no chromium found (apt-get install chromium, or set CHROMIUM)" >&2
  exit 1
fi
export CHROMIUM
bin=$(mktemp -d)/mqstream
go build -o "$bin" ./cmd/mqstream
export WEB_TEST_BIN=$bin
cd web/e2e
npm ci --no-audit --no-fund --silent
node --test --test-concurrency=1 ./
