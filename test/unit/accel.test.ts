/** The accelerator setting (--accel, HYPERBOX_ACCEL, the config file). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAccel } from '../../src/vm/accel.js';

describe('parseAccel', () => {
  it('auto when unset, empty or "auto"; kvm and tcg as given', () => {
    assert.equal(parseAccel(undefined), 'auto');
    assert.equal(parseAccel(''), 'auto');
    assert.equal(parseAccel('auto'), 'auto');
    assert.equal(parseAccel('kvm'), 'kvm');
    assert.equal(parseAccel('tcg'), 'tcg');
  });

  it('refuses anything else, naming the choices', () => {
    for (const v of ['KVM', 'hvf', 'warp', ' kvm']) assert.throws(() => parseAccel(v), new RegExp(`invalid accelerator "${v}": expected auto, kvm or tcg`));
  });
});
