/** Guest agent wire parsers under libFuzzer: scripts/fuzz-agent.sh builds
 * guest/fuzz/fuzz_proto.c (frame splitting and every request's TLV parser, with
 * AddressSanitizer and UBSan) and runs it for a bounded time from the seed
 * corpus in guest/fuzz/corpus/. Needs clang (npm run setup installs it). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SECONDS = 10;

describe('agent parser fuzzing', () => {
  it(`finds no crash in ${SECONDS} s of fuzzing`, (t) => {
    if (spawnSync('clang', ['--version']).error) {
      t.skip('clang is not installed (npm run setup installs clang and libclang-rt-14-dev)');
      return;
    }
    const r = spawnSync('bash', [path.join(repo, 'scripts/fuzz-agent.sh'), String(SECONDS)], {
      cwd: repo,
      encoding: 'utf8',
      timeout: (SECONDS + 120) * 1000, // the harness build included
    });
    const out = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.error, undefined, `fuzz-agent.sh did not run: ${r.error?.message}`);
    assert.equal(r.status, 0, `fuzzer failed (exit ${r.status}):\n${out.slice(-4000)}`);
    assert.doesNotMatch(out, /ERROR: (AddressSanitizer|libFuzzer)|runtime error:|deadly signal/);
    assert.match(out, /Done \d+ runs/, 'the fuzzer ran');
    assert.match(out, /fuzz-agent: no crash/);
  });
});
