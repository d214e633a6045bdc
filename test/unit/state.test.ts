/** The container state machine and the per-container operation lock. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canTransition, OperationLock, transition } from '../../src/engine/state.js';
import { NULL_TIME, type ContainerState } from '../../src/engine/types.js';

const fresh = (): ContainerState => ({ Status: 'created', Running: false, Paused: false, Pid: 0, ExitCode: 0, Error: '', OOMKilled: false, StartedAt: NULL_TIME, FinishedAt: NULL_TIME });

describe('container state machine', () => {
  it('walks created -> running -> paused -> running -> exited with Docker fields', () => {
    const s = fresh();
    transition(s, 'running', { pid: 7 });
    assert.deepEqual([s.Status, s.Running, s.Pid], ['running', true, 7]);
    assert.notEqual(s.StartedAt, NULL_TIME);
    transition(s, 'paused');
    assert.deepEqual([s.Status, s.Paused, s.Running], ['paused', true, true]);
    transition(s, 'running');
    assert.deepEqual([s.Status, s.Paused, s.Pid], ['running', false, 7]);
    transition(s, 'exited', { exitCode: 137, error: 'killed', oomKilled: true });
    assert.deepEqual([s.Status, s.Running, s.Pid, s.ExitCode, s.OOMKilled, s.Error], ['exited', false, 0, 137, true, 'killed']);
  });

  it('refuses moves the table does not allow', () => {
    assert.equal(canTransition('created', 'paused'), false);
    assert.throws(() => transition(fresh(), 'paused'), /not a valid transition/);
    assert.equal(canTransition('exited', 'restarting'), true);
  });
});

describe('operation lock', () => {
  it('runs operations one at a time, in order, and goes on after a failure', async () => {
    const lock = new OperationLock();
    const log: string[] = [];
    const op = (name: string, ms: number, fail = false) =>
      lock.run(name, async () => {
        log.push(`${name}:start:${lock.current}`);
        await new Promise((r) => setTimeout(r, ms));
        log.push(`${name}:end`);
        if (fail) throw new Error(name);
      });
    const a = op('start', 20);
    const b = op('stop', 1, true);
    const c = op('remove', 1);
    assert.equal(lock.idle, false);
    await a;
    await assert.rejects(b, /stop/);
    await c;
    assert.deepEqual(log, ['start:start:start', 'start:end', 'stop:start:stop', 'stop:end', 'remove:start:remove', 'remove:end']);
    await lock.settled();
    assert.equal(lock.idle, true);
  });
});
