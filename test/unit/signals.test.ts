/** Signal names and numbers as `kill -s`, `stop -s` and StopSignal accept them. */
import assert from 'node:assert/strict';
import os from 'node:os';
import { describe, it } from 'node:test';
import { HyperboxError } from '../../src/common/errors.js';
import { parseSignal } from '../../src/engine/signals.js';

describe('parseSignal', () => {
  it('reads names with or without SIG, in any case, and numbers', () => {
    for (const v of ['TERM', 'SIGTERM', 'sigterm', 'term', ' SIGTERM ', '15', 15]) assert.equal(parseSignal(v), 15, String(v));
    assert.equal(parseSignal('KILL'), 9);
    assert.equal(parseSignal('usr1'), os.constants.signals.SIGUSR1);
    assert.equal(parseSignal('SIGHUP'), 1);
    assert.equal(parseSignal('1'), 1);
    assert.equal(parseSignal('64'), 64, 'real-time signals by number');
  });

  it('falls back when no signal is given', () => {
    assert.equal(parseSignal(undefined), 9, 'SIGKILL by default');
    assert.equal(parseSignal(undefined, 'SIGTERM'), 15);
  });

  it('refuses unknown names and out-of-range numbers as invalid input', () => {
    for (const v of ['SIGFOO', 'foo', '0', '65', '-1', '9x', '', 'SIG']) {
      assert.throws(
        () => parseSignal(v),
        (err: unknown) => err instanceof HyperboxError && err.kind === 'invalid' && /invalid signal/.test(err.message),
        JSON.stringify(v),
      );
    }
  });
});
