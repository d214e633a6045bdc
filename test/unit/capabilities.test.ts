/** Capability names and sets as Docker has them (`--cap-add`, `--cap-drop`, `--privileged`). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HyperboxError } from '../../src/common/errors.js';
import { CAPABILITIES, capabilityMask, normalizeCapability } from '../../src/engine/capabilities.js';

const hex = (m: bigint) => m.toString(16).padStart(16, '0');

describe('capabilities', () => {
  it('normalizes names as Docker does: any case, with or without CAP_, and ALL', () => {
    assert.equal(normalizeCapability('net_admin'), 'CAP_NET_ADMIN');
    assert.equal(normalizeCapability('CAP_SYS_TIME'), 'CAP_SYS_TIME');
    assert.equal(normalizeCapability('cap_chown'), 'CAP_CHOWN');
    assert.equal(normalizeCapability('all'), 'ALL');
    assert.equal(normalizeCapability('Checkpoint_Restore'), 'CAP_CHECKPOINT_RESTORE');
    for (const bad of ['CAP_ALL', 'FLY', '', 'CAP_', 'NET ADMIN', 'CAP_CAP_CHOWN']) {
      assert.throws(() => normalizeCapability(bad), (e: unknown) => e instanceof HyperboxError && /^unknown capability: "CAP_/.test(e.message), bad);
    }
  });

  it("computes Docker's masks: default, add, drop, ALL and privileged", () => {
    assert.equal(CAPABILITIES.length, 41);
    assert.equal(hex(capabilityMask({})), '00000000a80425fb'); // docker run busybox grep CapEff /proc/self/status
    assert.equal(hex(capabilityMask({ CapAdd: ['NET_ADMIN'] })), '00000000a80435fb');
    assert.equal(hex(capabilityMask({ CapDrop: ['chown'] })), '00000000a80425fa');
    assert.equal(hex(capabilityMask({ Privileged: true, CapDrop: ['CHOWN'] })), '000001ffffffffff');
    assert.equal(hex(capabilityMask({ CapAdd: ['ALL'], CapDrop: ['SYS_ADMIN'] })), '000001ffffdfffff');
    assert.equal(hex(capabilityMask({ CapDrop: ['ALL'], CapAdd: ['KILL'] })), '0000000000000020');
    assert.equal(hex(capabilityMask({ CapDrop: ['all'] })), '0000000000000000');
  });
});
