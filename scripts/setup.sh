#!/usr/bin/env bash
# One-time set-up for a fresh machine: the system packages (redis-server, the embedded default's
# queue and state store, and what the test suites drive) when they are missing, then the
# project's npm packages (which also builds vfleet).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
  # Debian and Ubuntu: Redis, and what the test suites drive (sshd, QEMU, busybox, Chromium).
  ./scripts/install-system-packages.sh
elif [ -z "${REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  if command -v brew >/dev/null 2>&1; then
    echo "== installing redis (brew)"
    brew install redis
  else
    echo "vfleet needs redis-server on the PATH (or REDIS_URL set to a Redis it may use)." >&2
    exit 1
  fi
fi

echo "== npm ci"
npm ci --no-audit --no-fund
