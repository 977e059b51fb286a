#!/usr/bin/env bash
# The consumer check: build every published package, pack it as it would be
# published, install the tarballs with plain npm into a scratch project outside
# the workspace, then run and type-check a consumer against them.
# Usage: bash .ci/consumer-check.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--no-build" ]; then
  npx -y pnpm@10 build >/dev/null
fi
node .ci/consumer/check.mjs
