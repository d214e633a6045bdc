/** Restart policies, as Docker applies them: which exits restart, and the back-off. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NO_RESTART, restartDelayMs, restartsWithDaemon, shouldRestart, validateRestartPolicy } from '../../src/engine/restart.js';

const policy = (Name: string, MaximumRetryCount = 0) => ({ Name, MaximumRetryCount }) as typeof NO_RESTART;

describe('restart policies', () => {
  it('no policy, "" and "no" never restart', () => {
    for (const p of [undefined, NO_RESTART, policy('no')]) {
      assert.equal(shouldRestart(p, 1, 0, false), false);
      assert.equal(shouldRestart(p, 0, 0, false), false);
      assert.equal(restartsWithDaemon(p, false), false);
    }
  });

  it('always and unless-stopped restart on any exit code, unless stopped by the user', () => {
    for (const name of ['always', 'unless-stopped']) {
      for (const code of [0, 1, 137]) assert.equal(shouldRestart(policy(name), code, 100, false), true, `${name} exit ${code}`);
      assert.equal(shouldRestart(policy(name), 1, 0, true), false, `${name} after a manual stop`);
    }
  });

  it('on-failure restarts only non-zero exits, up to its maximum (0: no limit)', () => {
    assert.equal(shouldRestart(policy('on-failure'), 0, 0, false), false, 'a clean exit is not a failure');
    assert.equal(shouldRestart(policy('on-failure'), 2, 0, false), true);
    assert.equal(shouldRestart(policy('on-failure'), 2, 1000, false), true, 'no maximum');
    const three = policy('on-failure', 3);
    assert.deepEqual([0, 1, 2, 3, 4].map((count) => shouldRestart(three, 2, count, false)), [true, true, true, false, false]);
    assert.equal(shouldRestart(three, 2, 0, true), false, 'not after a manual stop');
  });

  it('on a daemon start: always comes back even after a manual stop, unless-stopped only if not stopped', () => {
    assert.equal(restartsWithDaemon(policy('always'), false), true);
    assert.equal(restartsWithDaemon(policy('always'), true), true);
    assert.equal(restartsWithDaemon(policy('unless-stopped'), false), true);
    assert.equal(restartsWithDaemon(policy('unless-stopped'), true), false);
    assert.equal(restartsWithDaemon(policy('on-failure', 3), false), false);
  });

  it('backs off from 100 ms, doubling, capped at 1 min', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((n) => restartDelayMs(n, 0)),
      [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200, 60_000],
    );
    for (const n of [11, 20, 1000]) assert.equal(restartDelayMs(n, 500), 60_000, `restart ${n} stays at the cap`);
  });

  it('resets the back-off once a run lasted 10 s', () => {
    assert.equal(restartDelayMs(8, 9_999), 25_600, 'a run just short of 10 s keeps backing off');
    assert.equal(restartDelayMs(8, 10_000), 100);
    assert.equal(restartDelayMs(50, 3_600_000), 100);
  });

  it('refuses --restart with --rm, and a retry count on other policies', () => {
    assert.match(validateRestartPolicy(policy('always'), true) ?? '', /cannot specify both --restart and --rm/);
    assert.match(validateRestartPolicy(policy('on-failure', 2), true) ?? '', /--restart and --rm/);
    assert.equal(validateRestartPolicy(policy('no'), true), undefined);
    assert.equal(validateRestartPolicy(NO_RESTART, true), undefined);
    assert.match(validateRestartPolicy(policy('always', 3), false) ?? '', /maximum retry count cannot be used with restart policy 'always'/);
    assert.equal(validateRestartPolicy(policy('on-failure', 3), false), undefined);
    assert.equal(validateRestartPolicy(policy('unless-stopped'), false), undefined);
  });
});
