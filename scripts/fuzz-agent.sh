#!/usr/bin/env bash
# Fuzzes the guest agent's wire parsers (guest/fuzz/fuzz_proto.c) with libFuzzer
# for a bounded time: scripts/fuzz-agent.sh [seconds] (default 10).
# Seeds come from guest/fuzz/corpus/ (node guest/fuzz/make-corpus.mjs); what the
# run discovers goes to a temporary directory, the repo is not written to.
# Exits non-zero if the fuzzer finds a crash; the reproducer is kept and named.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
[[ $secs =~ ^[0-9]+$ ]] || { echo "usage: $0 [seconds]" >&2; exit 2; }
command -v clang >/dev/null || { echo "fuzz-agent: clang is not installed (npm run setup installs it)" >&2; exit 3; }
make -s -C guest fuzz
work=$(mktemp -d /tmp/hyperbox-fuzz.XXXXXX)
mkdir -p "$work/corpus" "$work/artifacts"
set +e
build/guest/fuzz_proto -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -max_len=70000 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" guest/fuzz/corpus 2>"$work/log"
rc=$?
set -e
tail -n 40 "$work/log" >&2
if [ $rc -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
  echo "fuzz-agent: FAILED (exit $rc); reproducer(s) in $work/artifacts, log in $work/log" >&2
  exit 1
fi
rm -rf "$work"
echo "fuzz-agent: no crash in ${secs}s" >&2
