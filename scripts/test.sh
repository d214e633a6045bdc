#!/usr/bin/env bash
# Runs the whole test suite: unit tests and tests that boot real VMs.
# Expects `npm run setup` to have run (CI's .ci/run does both).
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p .
[ -f build/busybox-rootfs.tar ] && [ -e build/guest/vmlinux ] && [ -f build/guest/initrd.img ] || {
  echo "test: run 'npm run setup' first" >&2; exit 1; }
# VM tests compete for 2 cores: run files one at a time.
exec node --test --test-concurrency=1 --test-reporter=spec "${@:-dist/test/}"
