#!/usr/bin/env bash
# Installs the real servers the cross-package tests in test/ start themselves
# (today: redis-server). Idempotent: does nothing when they are already on PATH.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null

# The package may start a system service; the tests start their own servers.
if command -v service >/dev/null 2>&1; then
  $SUDO service redis-server stop >/dev/null 2>&1 || true
fi

command -v redis-server >/dev/null 2>&1 || { echo "install-servers: redis-server is still not on PATH" >&2; exit 1; }
echo "install-servers: $(redis-server --version)"
