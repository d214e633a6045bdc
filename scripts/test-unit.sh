#!/usr/bin/env bash
# The fast unit tier: pure logic under test/unit/. Boots no VM, starts no daemon,
# needs no setup beyond `npm ci` (a few cases use attr/zstd/sqlite3 tools or root
# and say so when they skip). Well under 30 s.
# HYPERBOX_SKIP_BUILD=1 skips the TypeScript build (scripts/test.sh has just built).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${HYPERBOX_SKIP_BUILD:-}" = 1 ] || npx tsc -p .
# The compiled files of the sources that exist: a stale dist/ file of a moved or
# deleted test is not run.
files=()
for f in test/unit/*.test.ts; do files+=("dist/${f%.ts}.js"); done
[ $# -eq 0 ] || files=("$@")
exec node --test --test-reporter=spec "${files[@]}"
