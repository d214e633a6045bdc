#!/usr/bin/env bash
# Runs the whole test suite: the unit tier (test/unit/, pure logic, seconds), then
# the VM tier (test/*.test.ts: real daemons booting real VMs).
# Expects `npm run setup` to have run (CI's .ci/run does both).
# With arguments, runs just those compiled test files (e.g. dist/test/lifecycle.test.js).
set -euo pipefail
cd "$(dirname "$0")/.."
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }

t0=$(now)
npx tsc -p .
t1=$(now)

if [ $# -gt 0 ]; then
  exec node --test --test-concurrency=1 --test-reporter=spec "$@"
fi

unit_rc=0
HYPERBOX_SKIP_BUILD=1 bash scripts/test-unit.sh || unit_rc=$?
t2=$(now)
if [ $unit_rc -ne 0 ]; then
  echo "test: unit tier failed ($(secs "$t1" "$t2")); VM tier not run" >&2
  exit $unit_rc
fi

[ -f build/busybox-rootfs.tar ] && [ -e build/guest/vmlinux ] && [ -f build/guest/initrd.img ] || {
  echo "test: run 'npm run setup' first (the VM tier boots real guests)" >&2; exit 1; }
# VM tests compete for 2 cores: run files one at a time. Only the compiled files of
# existing sources (not test/unit/, not a stale dist/ file of a moved test).
files=()
for f in test/*.test.ts; do files+=("dist/${f%.ts}.js"); done
vm_rc=0
node --test --test-concurrency=1 --test-reporter=spec "${files[@]}" || vm_rc=$?
t3=$(now)

echo
echo "test: build $(secs "$t0" "$t1"), unit tier $(secs "$t1" "$t2"), VM tier $(secs "$t2" "$t3") ($([ $vm_rc -eq 0 ] && echo passed || echo FAILED))"
exit $vm_rc
