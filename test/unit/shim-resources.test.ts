/**
 * The shim's reading of the OCI linux section (src/shim/resources.ts): cgroup
 * limits as runc converts them for cgroup v2, and what a main process gets.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { limitsOf, linuxProcessSpec, sharesToWeight } from '../../src/shim/resources.js';

describe('OCI linux section for the guest', () => {
  it('converts linux.resources to cgroup v2 limits, leaving out what is not set', () => {
    assert.deepEqual(limitsOf(undefined), {});
    assert.deepEqual(limitsOf({ memory: { limit: 15 << 20, swap: 15 << 20 }, cpu: { shares: 1024, quota: 50_000, period: 100_000 }, pids: { limit: 100 } }), {
      memoryBytes: 15 << 20, cpu: { quotaUs: 50_000, periodUs: 100_000 }, cpuWeight: 39, pids: 100,
    });
    // -1 and 0 mean no limit; a quota without a period gets the kernel's default period.
    assert.deepEqual(limitsOf({ memory: { limit: -1 }, cpu: { quota: -1 }, pids: { limit: 0 } }), { memoryBytes: 0, cpu: { quotaUs: undefined, periodUs: 100_000 }, pids: 0 });
    assert.deepEqual([2, 512, 1024, 262144].map(sharesToWeight), [1, 20, 39, 10000]);
    assert.throws(() => limitsOf({ memory: { limit: '1g' as unknown as number } }), /memory\.limit must be a number/);
  });

  it("gives the main process the spec's sysctls, masked and read-only paths and a seccomp program", () => {
    const got = linuxProcessSpec({ sysctl: { 'kernel.shm_rmid_forced': '1' }, maskedPaths: ['/proc/kcore'], readonlyPaths: ['/proc/sys'], seccomp: { defaultAction: 'SCMP_ACT_ALLOW' } });
    assert.deepEqual(got.sysctls, ['kernel.shm_rmid_forced=1']);
    assert.deepEqual([got.maskedPaths, got.readonlyPaths], [['/proc/kcore'], ['/proc/sys']]);
    assert.equal(got.seccomp!.length % 8, 0);
    assert.equal(linuxProcessSpec(undefined).seccomp, undefined);
    assert.throws(() => linuxProcessSpec({ maskedPaths: ['relative'] }), /absolute paths/);
    assert.throws(() => linuxProcessSpec({ seccomp: { defaultAction: 'SCMP_ACT_NOTIFY' } }), /not supported/);
  });
});
