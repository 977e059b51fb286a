#!/usr/bin/env bash
# Installs the real servers the cross-package tests in test/ start themselves
# (redis-server; PostgreSQL for examples/vector-pool). Idempotent: does nothing when they are installed.
set -euo pipefail

has_postgres() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
has_postgres || missing+=(postgresql)
# Debian's chromium, for the dashboard's real-browser test (playwright-core drives it; no browser download).
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# The package may start a system service; the tests start their own servers.
if command -v service >/dev/null 2>&1; then
  $SUDO service redis-server stop >/dev/null 2>&1 || true
  $SUDO service postgresql stop >/dev/null 2>&1 || true
fi

command -v redis-server >/dev/null 2>&1 || { echo "install-servers: redis-server is still not on PATH" >&2; exit 1; }
has_postgres || { echo "install-servers: postgres is still not under /usr/lib/postgresql" >&2; exit 1; }
command -v chromium >/dev/null 2>&1 || { echo "install-servers: chromium is still not on PATH" >&2; exit 1; }
echo "install-servers: $(redis-server --version)"
postgres_bin=$(compgen -G "/usr/lib/postgresql/*/bin/postgres" | head -n 1)
echo "install-servers: $("$postgres_bin" --version)"
