#!/usr/bin/env bash
# One-time set-up for a fresh machine: redis-server (the embedded default's queue and state
# store) when it is missing, then the project's npm packages (which also builds vfleet).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=''
    [ "$(id -u)" -eq 0 ] || sudo='sudo'
    echo "== installing redis-server (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  elif command -v brew >/dev/null 2>&1; then
    echo "== installing redis (brew)"
    brew install redis
  else
    echo "vfleet needs redis-server on the PATH (or REDIS_URL set to a Redis it may use)." >&2
    exit 1
  fi
fi

echo "== npm ci"
npm ci --no-audit --no-fund
